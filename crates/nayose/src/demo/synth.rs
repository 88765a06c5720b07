//! The demo's synthetic world: a registry of persons holding 1 to 6 insured numbers across
//! insurer changes, and an accredited entity's held file that spells those numbers the many ways
//! real files do (full-width digits, full-width dashes, colon form, duplicates), mixed with
//! numbers the server does not know and a few invalid rows.
//!
//! Everything is derived from a seed, so a demo run is reproducible. Insurer numbers carry valid
//! check digits (computed with `nayose_number::check_digit`), so the data passes the same
//! validation real data must pass.

use std::collections::HashSet;

use nayose_number::{InsuredNumber, check_digit};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};

/// One insurer of the synthetic world.
#[derive(Debug, Clone)]
struct Insurer {
    /// 8 digits, or 6 for 国民健康保険 (as real files write them).
    number: String,
    kind: InsurerKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InsurerKind {
    /// 協会けんぽ (法別 01): numeric 記号.
    Kyokai,
    /// 健康保険組合 (06) and 共済 (31–34): numeric 記号.
    Kumiai,
    /// 国民健康保険 (6-digit insurer number): 記号 with kanji, written full-width on cards.
    Kokuho,
    /// 後期高齢者医療 (39): no 記号, no 枝番.
    LateElderly,
}

/// A number of the registry, with the person it belongs to.
#[derive(Debug, Clone)]
pub(crate) struct RegistryRow {
    /// The stable person id.
    pub(crate) person: String,
    /// 保険者番号 as written in the registry.
    pub(crate) insurer: String,
    /// 記号 (empty when absent).
    pub(crate) symbol: String,
    /// 番号.
    pub(crate) number: String,
    /// 枝番 (empty when absent).
    pub(crate) branch: String,
}

impl RegistryRow {
    fn parsed(&self) -> Option<InsuredNumber> {
        InsuredNumber::from_fields(&self.insurer, &self.symbol, &self.number, &self.branch).ok()
    }
}

/// What a held row is expected to come out as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expect {
    /// A number of this person: `linked`, grouped with the person's other rows.
    Person(String),
    /// A valid number the server does not know: `not_found`.
    Unknown,
    /// A row no number can be read from: `invalid`.
    Invalid,
}

/// One row of the held file.
#[derive(Debug, Clone)]
pub(crate) struct HeldRow {
    /// The entity's own record id (carried through).
    pub(crate) record_id: String,
    /// The combined number string, in one of the real-world spellings.
    pub(crate) insured_number: String,
    /// A free-text column (carried through untouched).
    pub(crate) note: String,
    /// Ground truth for the check.
    pub(crate) expect: Expect,
}

const KOKUHO_SYMBOLS: [&str; 8] = [
    "札幌東",
    "青葉",
    "中央",
    "港北",
    "博多",
    "那覇",
    "函館",
    "金沢",
];
const NOTES: [&str; 5] = ["外来", "入院", "健診", "訪問看護", "調剤"];

/// `body` (ASCII digits, made by this module) followed by its check digit.
fn with_check(body: &str) -> String {
    match check_digit(body.as_bytes()) {
        Some(c) => format!("{body}{c}"),
        None => unreachable!("insurer bodies are generated from digits"),
    }
}

fn insurers(rng: &mut StdRng) -> Vec<Insurer> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    while out.len() < 240 {
        let pref = rng.random_range(1..=47u32);
        let kind = match rng.random_range(0..10) {
            0..=2 => InsurerKind::Kyokai,
            3..=5 => InsurerKind::Kumiai,
            6..=8 => InsurerKind::Kokuho,
            _ => InsurerKind::LateElderly,
        };
        let body = match kind {
            InsurerKind::Kyokai => format!("01{pref:02}{:03}", rng.random_range(0..1000)),
            InsurerKind::Kumiai => {
                let law = [6u32, 31, 32, 33, 34][rng.random_range(0..5)];
                format!("{law:02}{pref:02}{:03}", rng.random_range(0..1000))
            }
            InsurerKind::Kokuho => format!("{pref:02}{:03}", rng.random_range(0..1000)),
            InsurerKind::LateElderly => format!("39{pref:02}{:03}", rng.random_range(0..1000)),
        };
        let number = with_check(&body);
        if seen.insert(number.clone()) {
            out.push(Insurer { number, kind });
        }
    }
    out
}

fn number_under(rng: &mut StdRng, ins: &Insurer) -> (String, String, String) {
    match ins.kind {
        InsurerKind::Kyokai | InsurerKind::Kumiai => (
            format!(
                "{:0w$}",
                rng.random_range(0..10_000_000u32),
                w = rng.random_range(4..=8)
            ),
            format!("{}", rng.random_range(1..10_000_000u32)),
            format!("{:02}", rng.random_range(0..4)),
        ),
        InsurerKind::Kokuho => (
            format!(
                "{}{}",
                KOKUHO_SYMBOLS[rng.random_range(0..KOKUHO_SYMBOLS.len())],
                rng.random_range(1..100u32)
            ),
            format!("{:06}", rng.random_range(0..1_000_000u32)),
            format!("{:02}", rng.random_range(0..4)),
        ),
        InsurerKind::LateElderly => (
            String::new(),
            format!("{:08}", rng.random_range(0..100_000_000u32)),
            String::new(),
        ),
    }
}

/// Converts ASCII digits (and the dash) to full width, as numbers typed on Japanese keyboards
/// often arrive.
fn full_width(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '0'..='9' => char::from_u32(c as u32 - '0' as u32 + 0xFF10).unwrap_or(c),
            '-' => '－',
            ':' => '：',
            _ => c,
        })
        .collect()
}

/// One of the spellings real files use for the same number.
fn spell(rng: &mut StdRng, n: &InsuredNumber) -> String {
    // 国民健康保険 insurer numbers are printed with 6 digits on cards; files hold both forms.
    let insurer = match n.insurer().as_str().strip_prefix("00") {
        Some(six) if rng.random_range(0..2) == 0 => six,
        _ => n.insurer().as_str(),
    };
    let dashed = n.dashed().replacen(n.insurer().as_str(), insurer, 1);
    let colon = format!(
        "{}:{}:{}:{}",
        insurer,
        n.symbol().map(|s| s.as_str()).unwrap_or(""),
        n.number().as_str(),
        n.branch().map(|b| b.as_str()).unwrap_or("")
    );
    match rng.random_range(0..5) {
        0 => dashed,
        1 => full_width(&dashed),
        2 => colon,
        3 => full_width(&colon),
        _ => format!("\u{3000}{}\u{3000}", dashed.replace('-', "\u{2212}")),
    }
}

/// The synthetic world of a demo run.
#[derive(Debug)]
pub(crate) struct World {
    /// Registry rows (one per number the server knows).
    pub(crate) registry: Vec<RegistryRow>,
    /// Held rows (the entity's file).
    pub(crate) held: Vec<HeldRow>,
}

/// Generates `persons` persons (each with 1 to 6 numbers, mean 3.5) and a held file of about
/// `held` rows.
pub(crate) fn generate(seed: u64, persons: usize, held: usize) -> World {
    let mut rng = StdRng::seed_from_u64(seed);
    let insurers = insurers(&mut rng);
    let mut taken = HashSet::new();
    let mut registry = Vec::new();
    let mut by_person: Vec<Vec<usize>> = Vec::with_capacity(persons);
    for p in 0..persons {
        let person = format!("P{p:08}");
        let count = rng.random_range(1..=6);
        let mut mine = Vec::new();
        let mut late_elderly = false;
        while mine.len() < count {
            let ins = &insurers[rng.random_range(0..insurers.len())];
            if ins.kind == InsurerKind::LateElderly && late_elderly {
                continue;
            }
            let (symbol, number, branch) = number_under(&mut rng, ins);
            let row = RegistryRow {
                person: person.clone(),
                insurer: ins.number.clone(),
                symbol,
                number,
                branch,
            };
            let Some(parsed) = row.parsed() else { continue };
            if !taken.insert(parsed.canonical_bytes()) {
                continue;
            }
            late_elderly |= ins.kind == InsurerKind::LateElderly;
            mine.push(registry.len());
            registry.push(row);
        }
        by_person.push(mine);
    }

    let mut rows = Vec::new();
    let mut order: Vec<usize> = (0..persons).collect();
    order.shuffle(&mut rng);
    let mut record = 0usize;
    let next_id = |r: &mut usize| {
        *r += 1;
        format!("R{:07}", *r)
    };
    for &p in &order {
        if rows.len() >= held * 85 / 100 {
            break;
        }
        let nums = &by_person[p];
        let k = rng.random_range(1..=nums.len());
        let mut chosen = nums.clone();
        chosen.shuffle(&mut rng);
        for &i in chosen.iter().take(k) {
            let Some(n) = registry[i].parsed() else {
                continue;
            };
            let expect = Expect::Person(registry[i].person.clone());
            let copies = if rng.random_range(0..10) == 0 { 2 } else { 1 };
            for _ in 0..copies {
                rows.push(HeldRow {
                    record_id: next_id(&mut record),
                    insured_number: spell(&mut rng, &n),
                    note: NOTES[rng.random_range(0..NOTES.len())].to_string(),
                    expect: expect.clone(),
                });
            }
        }
    }
    // Numbers the server does not know: valid, under real insurers, never issued.
    while rows.len() < held * 99 / 100 {
        let ins = &insurers[rng.random_range(0..insurers.len())];
        let (symbol, number, branch) = number_under(&mut rng, ins);
        let Ok(n) = InsuredNumber::from_fields(&ins.number, &symbol, &number, &branch) else {
            continue;
        };
        if taken.contains(&n.canonical_bytes()) {
            continue;
        }
        rows.push(HeldRow {
            record_id: next_id(&mut record),
            insured_number: spell(&mut rng, &n),
            note: "他院紹介".to_string(),
            expect: Expect::Unknown,
        });
    }
    // A few rows nobody can read: a wrong check digit, a household-level number.
    let target = held.max(rows.len() + 2);
    while rows.len() < target {
        let i = rng.random_range(0..registry.len());
        let r = &registry[i];
        let bad = if rows.len() % 2 == 0 || r.branch.is_empty() {
            let mut ins = r.insurer.clone().into_bytes();
            let last = ins.len() - 1;
            ins[last] = b'0' + (ins[last] - b'0' + 1) % 10;
            format!(
                "{}-{}-{}{}",
                String::from_utf8_lossy(&ins),
                r.symbol,
                r.number,
                r.branch
            )
            .replace("--", "-")
        } else {
            format!("{}:{}:{}:", r.insurer, r.symbol, r.number)
        };
        rows.push(HeldRow {
            record_id: next_id(&mut record),
            insured_number: bad,
            note: "要確認".to_string(),
            expect: Expect::Invalid,
        });
    }
    rows.shuffle(&mut rng);
    World {
        registry,
        held: rows,
    }
}

/// What [`evolve`] changed.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Changes {
    /// Numbers added (of new persons).
    pub(crate) added: usize,
    /// Numbers removed (of persons the entity does not hold).
    pub(crate) removed: usize,
    /// Numbers whose person changed (person records merged).
    pub(crate) relabelled: usize,
}

/// The registry of the next day: about 1% new numbers of new persons, 0.1% of the numbers
/// removed (of persons the held file does not name), and about 0.2% of the persons merged into
/// another person (their numbers relabelled; the held file's ground truth follows the merge).
pub(crate) fn evolve(world: &mut World, seed: u64) -> Changes {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6e61_796f_7365_0002);
    let insurers = insurers(&mut StdRng::seed_from_u64(seed));
    let mut changes = Changes::default();
    let held_persons: HashSet<String> = world
        .held
        .iter()
        .filter_map(|h| match &h.expect {
            Expect::Person(p) => Some(p.clone()),
            _ => None,
        })
        .collect();
    let mut persons: Vec<String> = world.registry.iter().map(|r| r.person.clone()).collect();
    persons.sort();
    persons.dedup();
    // Merges: person `from` becomes person `into`.
    let merges = (persons.len() / 500).max(1);
    let mut merged = std::collections::HashMap::new();
    for _ in 0..merges {
        let from = persons[rng.random_range(0..persons.len())].clone();
        let into = persons[rng.random_range(0..persons.len())].clone();
        if from != into && !merged.contains_key(&into) && !merged.contains_key(&from) {
            merged.insert(from, into);
        }
    }
    for r in &mut world.registry {
        if let Some(into) = merged.get(&r.person) {
            r.person = into.clone();
            changes.relabelled += 1;
        }
    }
    for h in &mut world.held {
        if let Expect::Person(p) = &h.expect
            && let Some(into) = merged.get(p)
        {
            h.expect = Expect::Person(into.clone());
        }
    }
    // Removals: numbers of persons the entity does not hold.
    let remove = world.registry.len() / 1000;
    let before = world.registry.len();
    let mut kept = Vec::with_capacity(before);
    for r in world.registry.drain(..) {
        if changes.removed < remove
            && !held_persons.contains(&r.person)
            && rng.random_range(0..20) == 0
        {
            changes.removed += 1;
        } else {
            kept.push(r);
        }
    }
    world.registry = kept;
    // Additions: new persons with one or two numbers each.
    // Never issue a number the held file already has (its rows expect "not found").
    let mut taken: HashSet<Vec<u8>> = world
        .registry
        .iter()
        .filter_map(|r| r.parsed().map(|n| n.canonical_bytes()))
        .chain(
            world
                .held
                .iter()
                .filter_map(|h| InsuredNumber::parse(&h.insured_number).ok())
                .map(|n| n.canonical_bytes()),
        )
        .collect();
    let add = before / 100;
    let mut p = 0usize;
    while changes.added < add {
        let person = format!("N{p:08}");
        p += 1;
        for _ in 0..rng.random_range(1..=2) {
            let ins = &insurers[rng.random_range(0..insurers.len())];
            let (symbol, number, branch) = number_under(&mut rng, ins);
            let row = RegistryRow {
                person: person.clone(),
                insurer: ins.number.clone(),
                symbol,
                number,
                branch,
            };
            let Some(parsed) = row.parsed() else { continue };
            if taken.insert(parsed.canonical_bytes()) {
                world.registry.push(row);
                changes.added += 1;
            }
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_world_is_valid_where_it_claims_to_be() {
        let w = generate(7, 2000, 1500);
        assert!(w.registry.len() > 2000 * 3);
        for r in &w.registry {
            assert!(r.parsed().is_some(), "{r:?}");
        }
        let mut kinds = [0usize; 3];
        for h in &w.held {
            let parsed = InsuredNumber::parse(&h.insured_number);
            match &h.expect {
                Expect::Person(_) => {
                    kinds[0] += 1;
                    assert!(parsed.is_ok(), "{h:?}: {parsed:?}");
                }
                Expect::Unknown => {
                    kinds[1] += 1;
                    assert!(parsed.is_ok(), "{h:?}");
                }
                Expect::Invalid => {
                    kinds[2] += 1;
                    assert!(parsed.is_err(), "{h:?}");
                }
            }
        }
        assert!(kinds.iter().all(|&k| k > 0), "{kinds:?}");
        assert!(w.held.iter().any(|h| h.insured_number.contains('－')));
        let check_digits: HashSet<u8> = w
            .registry
            .iter()
            .map(|r| *r.insurer.as_bytes().last().unwrap())
            .collect();
        assert!(
            check_digits.len() >= 8,
            "check digits vary: {check_digits:?}"
        );
        assert!(w.held.iter().any(|h| h.insured_number.contains('：')));
    }
}
