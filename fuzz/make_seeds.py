#!/usr/bin/env python3
"""Writes the seed corpora fuzz/seeds/<target>/ from a demo data directory and the wire vectors.

    nayose demo --persons 40 --held 30 --seed 7 --keep /tmp/demo-seed
    python3 fuzz/make_seeds.py /tmp/demo-seed

Every file is synthetic (the demo's generated registry, PKI and keys are throwaway); key files
are not copied: the key seeds are fixed test values. Each seed starts with the selector byte
its target reads first (see the target's doc comment).
"""

import hashlib
import hmac
import io
import json
import os
import struct
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = os.path.join(ROOT, "fuzz", "seeds")


def write(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(*parts):
    with open(os.path.join(*parts), "rb") as f:
        return f.read()


def newest(dirpath):
    return os.path.join(dirpath, sorted(os.listdir(dirpath))[-1])


def wire():
    path = os.path.join(ROOT, "protocol-spec", "vectors", "wire-vectors.json")
    for v in json.load(open(path))["vectors"]:
        for kind in ("payload", "frame"):
            write("decode", f"{v['name']}.{kind}", bytes.fromhex(v[kind]))


def epoch_files(demo):
    server = os.path.join(demo, "server")
    epoch = newest(os.path.join(server, "epochs"))
    manifest = read(epoch, "manifest.toml")
    fields = dict(
        line.split(" = ", 1) for line in manifest.decode().splitlines() if " = " in line
    )
    number, persons = int(fields["number"]), int(fields["persons"])
    write("epoch_files", "manifest.toml", b"\x00" + manifest)
    kp = newest(os.path.join(server, "keyperiods"))
    write("epoch_files", "keyperiod.toml", b"\x01" + read(kp, "keyperiod.toml"))
    write(
        "epoch_files",
        "table.bin",
        b"\x02" + struct.pack("<II", number, persons) + read(epoch, "table.bin"),
    )
    persons = read(epoch, "persons.bin")
    # Format 2 without its key check (bytes 16..32): the target puts in the fuzz key's.
    write("epoch_files", "persons.bin", b"\x03" + persons[:16] + persons[32:])
    write("epoch_files", "index.bin", b"\x04" + read(epoch, "index.bin"))
    delta = read(newest(os.path.join(server, "deltas")))
    write("epoch_files", "delta.bin", b"\x05" + delta)
    write("epoch_files", "delta-unsealed.bin", b"\x06" + delta[:-32])
    write("epoch_files", "label-master.key", b"\x07" + bytes([1] * 32))
    write("epoch_files", "oprf.key", b"\x08" + bytes([1]) + bytes(31))
    write("epoch_files", "current", b"\x09" + read(server, "current"))


def state_files(demo):
    server = os.path.join(demo, "server")
    write("state_files", "quota.json", b"\x00" + read(server, "state", "quota.json"))
    lines = read(server, "audit", "audit.log").splitlines()[:4]
    log = b"".join(line + b"\n" for line in lines)
    head = json.dumps(
        {"count": len(lines), "hash": hashlib.sha256(lines[-1]).hexdigest()},
        separators=(",", ":"),
    ).encode()
    anchor = json.dumps(
        {"time": "2026-11-29T00:00:00Z", "seq": 2, "link": hashlib.sha256(lines[1]).hexdigest()},
        separators=(",", ":"),
    ).encode()
    write("state_files", "audit-unkeyed", b"\x01" + log + b"\x00" + head + b"\x00" + anchor + b"\n")
    # The same records authenticated with the targets' audit key (32 bytes of 0x42).
    key = bytes([0x42] * 32)
    key_id = hashlib.sha256(b"nayose audit key id\x00" + key).hexdigest()[:16]
    prev, keyed = "0" * 64, []
    for line in lines:
        rec = json.loads(line)
        rec.pop("prev")
        rec["key_id"], rec["prev"] = key_id, prev
        out = json.dumps(rec, separators=(",", ":"), ensure_ascii=False).encode()
        keyed.append(out)
        prev = hmac.new(key, out, hashlib.sha256).hexdigest()
    log = b"".join(line + b"\n" for line in keyed)
    head = json.dumps({"count": len(keyed), "hash": prev}, separators=(",", ":")).encode()
    write("state_files", "audit-keyed", b"\x03" + log + b"\x00" + head + b"\x00")


def oprf_cache(demo):
    cache = os.path.join(demo, "cache")
    for dirpath, _, files in os.walk(cache):
        if "oprf.bin" in files:
            data = read(dirpath, "oprf.bin")
            write("oprf_cache", "oprf.bin", b"\x00" + data[: 32 + 88 * 8])


def xlsx(rows):
    """A minimal .xlsx workbook (inline strings) with `rows` on its first sheet."""
    cells = "".join(
        "<row r=\"%d\">%s</row>"
        % (
            i + 1,
            "".join(
                "<c r=\"%s%d\" t=\"inlineStr\"><is><t>%s</t></is></c>" % (chr(65 + j), i + 1, v)
                for j, v in enumerate(row)
            ),
        )
        for i, row in enumerate(rows)
    )
    files = {
        "[Content_Types].xml": '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>',
        "_rels/.rels": '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>',
        "xl/workbook.xml": '<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>',
        "xl/_rels/workbook.xml.rels": '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>',
        "xl/worksheets/sheet1.xml": '<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>%s</sheetData></worksheet>'
        % cells,
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in files.items():
            z.writestr(name, text)
    return buf.getvalue()


def csv_input(demo):
    held = read(demo, "held.csv").decode("utf-8").splitlines()[:12]
    registry = read(demo, "registry.csv").decode("utf-8").splitlines()[:12]
    for name, lines, reader in (("held", held, 0x00), ("registry", registry, 0x80)):
        text = "\r\n".join(lines) + "\r\n"
        # Low 3 bits: the encoding (6: detect); 0x80 / 0xc0: the registry readers.
        write("csv_input", f"{name}-utf8", bytes([reader | 6]) + text.encode("utf-8"))
        write("csv_input", f"{name}-cp932", bytes([reader | 2]) + text.encode("cp932"))
        write("csv_input", f"{name}-utf16le", bytes([reader | 3]) + text.encode("utf-16"))
        tsv = text.replace(",", "\t")
        write("csv_input", f"{name}-tsv", bytes([reader | 0x40 | 6]) + tsv.encode("utf-8"))
        rows = [line.split(",") for line in lines[:5]]
        write("csv_input", f"{name}.xlsx", bytes([reader | 5]) + xlsx(rows))
    write("csv_input", "registry-raw", bytes([0xC6]) + ("\n".join(registry) + "\n").encode())


def numbers(demo):
    held = read(demo, "held.csv").decode("utf-8").splitlines()[1:9]
    for i, line in enumerate(held):
        write("numbers", f"held-{i}", line.split(",")[1].encode())
    for i, line in enumerate(read(demo, "registry.csv").decode().splitlines()[1:5]):
        write("numbers", f"fields-{i}", "\0".join(line.split(",")[1:]).encode())
    # The canonical encoding of 06207948:9825933:1067851:02.
    enc = b"\x01" + bytes([21]) + b"nayose-insured-number" + b"06207948"
    enc += b"\x01" + bytes([7]) + b"9825933" + bytes([7]) + b"1067851" + b"\x01" + b"02"
    write("numbers", "canonical", enc)


def config_files(demo):
    server_toml = b"""listen = "127.0.0.1:4433"
data_dir = "data"
cert = "pki/server.pem"
key = "pki/server.key"
client_ca = "pki/client-ca.pem"
clients = "clients.toml"
evaluations_per_day = 100000
"""
    write("config_files", "server.toml", b"\x00" + server_toml)
    write("config_files", "clients.toml", b"\x01" + read(demo, "clients.toml"))
    client_toml = b"""server = "localhost:4433"
ca = "pki/server-ca.pem"
cert = "pki/clients/a.pem"
key = "pki/clients/a.key"
input = "held.csv"
output = "held.linked.csv"

[columns]
combined = "insured_number"
"""
    write("config_files", "client.toml", b"\x02" + client_toml)


def main():
    demo = sys.argv[1]
    wire()
    epoch_files(demo)
    state_files(demo)
    oprf_cache(demo)
    csv_input(demo)
    numbers(demo)
    config_files(demo)


if __name__ == "__main__":
    main()
