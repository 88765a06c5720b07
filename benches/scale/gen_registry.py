#!/usr/bin/env python3
"""Synthetic national-style registry for the scale run (issue 10).

Writes, into OUT_DIR:
  registry.csv   N numbers of about N/3.1 persons (person_id,insurer_number,symbol,number,branch)
  registry2.csv  the next day's registry: 1% of numbers added (new persons and insurer changes
                 of existing persons), 0.1% relabelled (person records merged)
  held.csv       H numbers an entity holds (record_id,insurer_number,symbol,number,branch),
                 with 1% of them taken from the numbers added in registry2.csv

The insurer mix follows the real one roughly: 国民健康保険 (6-digit insurer numbers, kanji 記号)
about 22%, 協会けんぽ (法別 01) 30%, 健康保険組合 (06) 22%, 共済 (31-34) 7%, 後期高齢者医療
(39, no 記号 and no 枝番) 15%, others 4%; about 3,400 insurers; every insurer number carries a
valid check digit. Deterministic for a given N and H.
"""
import random
import sys


def check_digit(body):
    s = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        p = d * 2 if i % 2 == 0 else d
        s += p // 10 + p % 10
    return str((10 - s % 10) % 10)


KANJI = "東西南北中央本町市区郡村上下新旧"


def insurers(rng):
    out = []  # (number, kind)
    pref = lambda: "%02d" % rng.randint(1, 47)
    for _ in range(1700):  # 国保 (6 digits: 都道府県 2 + 保険者別 3 + check)
        body = pref() + "%03d" % rng.randint(1, 999)
        out.append((body + check_digit(body), "kokuho"))
    for law, n in (("01", 47), ("06", 1380), ("31", 60), ("32", 60), ("33", 60), ("34", 30),
                   ("39", 47), ("63", 20), ("67", 20)):
        for _ in range(n):
            body = law + pref() + "%03d" % rng.randint(1, 999)
            kind = "late" if law == "39" else ("kyokai" if law == "01" else "kumiai")
            out.append((body + check_digit(body), kind))
    return out


def pick_weights(ins):
    # Number of insured per insurer kind, as weights.
    w = {"kokuho": 0.22 / 1700, "kyokai": 0.30 / 47, "kumiai": 0.29 / 1610,
         "late": 0.15 / 47}
    return [w.get(k, 0.04 / 40) for _, k in ins]


def number_fields(rng, ins, serial):
    """The fields of number `serial`; the 番号 holds the serial, so numbers are distinct by
    construction (no set of all numbers is kept: 50 million would not fit)."""
    number, kind = ins
    if kind == "late":
        return number, "", "%08d" % serial, ""
    if kind == "kokuho":
        sym = rng.choice(KANJI) + str(rng.randint(1, 99))
        return number, sym, "%06d" % serial, "%02d" % rng.randint(0, 5)
    sym = str(rng.randint(1, 99999))
    return number, sym, str(serial), "%02d" % rng.randint(0, 5)


def main():
    n, h, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    rng = random.Random(20261129)
    ins = insurers(rng)
    weights = pick_weights(ins)
    state = {"person": 0, "serial": 0}

    def new_number(person):
        state["serial"] += 1
        i = next(kinds)
        return (person,) + number_fields(rng, ins[i], state["serial"])

    def kind_stream():
        while True:
            for i in rng.choices(range(len(ins)), weights, k=65536):
                yield i

    kinds = kind_stream()

    def rows():
        """The registry's rows, streamed: persons hold 1 to 6 numbers (insurer changes over a
        life), about 3.1 on average."""
        made = 0
        while made < n:
            state["person"] += 1
            person = "P%010d" % state["person"]
            k = min(rng.choice((1, 1, 2, 3, 3, 4, 4, 5, 6)), n - made)
            for _ in range(k):
                yield new_number(person)
            made += k

    header = "person_id,insurer_number,symbol,number,branch\n"
    step = max(1, n // h)
    held_old = h - h // 100
    with open(out + "/registry.csv", "w", encoding="utf-8") as r1, open(
        out + "/registry2.csv", "w", encoding="utf-8"
    ) as r2, open(out + "/held.csv", "w", encoding="utf-8") as hf:
        r1.write(header)
        r2.write(header)
        hf.write("record_id,insurer_number,symbol,number,branch\n")
        held = 0
        prev = None
        for j, row in enumerate(rows()):
            r1.write(",".join(row) + "\n")
            # The next day, every 1000th number is relabelled: merged into the person of the
            # number after it (written once that one is known).
            if prev is not None:
                pj, prow = prev
                if pj % 1000 == 0:
                    prow = (row[0],) + prow[1:]
                r2.write(",".join(prow) + "\n")
            prev = (j, row)
            if j % step == 0 and held < held_old:
                hf.write("R%d,%s\n" % (held, ",".join(row[1:])))
                held += 1
        if prev is not None:
            r2.write(",".join(prev[1]) + "\n")
        # 1% added the next day: new persons; the entity holds 1% of its file among them.
        for a in range(n // 100):
            state["person"] += 1
            row = new_number("P%010d" % state["person"])
            r2.write(",".join(row) + "\n")
            if held < h:
                hf.write("R%d,%s\n" % (held, ",".join(row[1:])))
                held += 1


if __name__ == "__main__":
    main()
