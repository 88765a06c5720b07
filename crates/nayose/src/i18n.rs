//! The messages an entity's staff read, in English or Japanese: the summary of `client link`,
//! its errors, and the reasons and hints of invalid or changed rows.
//!
//! The language is `--lang en|ja`, else the locale: the first of `LC_ALL`, `LC_MESSAGES`,
//! `LANG` that is set and not empty; one starting with `ja` selects Japanese. English is the
//! default, and in English the messages are the libraries' own `Display` texts, unchanged; this
//! module only renders the Japanese ones. The `--json` output is the same in both languages
//! (its keys and codes are for scripts).
//!
//! Invariants: every key of [`CATALOGUE`] has an English and a Japanese text with the same
//! placeholders (`{0}`, `{1}`, …); a missing key renders as the key itself, never panics.

use std::fmt::Write as _;

use nayose_client::{ClientError, LinkSummary, Phase, ProtoError, summary};

/// The language of messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Lang {
    /// English (the libraries' own texts).
    #[default]
    En,
    /// Japanese.
    Ja,
}

impl Lang {
    /// `--lang` if given (`en` or `ja`), else the locale.
    pub(crate) fn select(flag: Option<&str>) -> Result<Lang, String> {
        match flag.map(str::to_ascii_lowercase).as_deref() {
            Some("ja" | "jp" | "japanese") => Ok(Lang::Ja),
            Some("en" | "english") => Ok(Lang::En),
            Some(other) => Err(format!("--lang {other:?}: use en or ja")),
            None => Ok(Self::from_locale(|k| std::env::var(k).ok())),
        }
    }

    /// The first of `LC_ALL`, `LC_MESSAGES`, `LANG` that is set and not empty decides.
    pub(crate) fn from_locale(var: impl Fn(&str) -> Option<String>) -> Lang {
        ["LC_ALL", "LC_MESSAGES", "LANG"]
            .iter()
            .find_map(|k| var(k).filter(|v| !v.is_empty()))
            .map_or(Lang::En, |v| {
                if v.to_ascii_lowercase().starts_with("ja") {
                    Lang::Ja
                } else {
                    Lang::En
                }
            })
    }
}

/// One message: its key, English text and Japanese text. `{0}`, `{1}`, … are filled in.
pub(crate) struct Message {
    key: &'static str,
    en: &'static str,
    ja: &'static str,
}

const fn m(key: &'static str, en: &'static str, ja: &'static str) -> Message {
    Message { key, en, ja }
}

/// Every message. Reason codes (`reason.*`, `hint.*`) are those of `nayose_csv::ReportReason`.
pub(crate) const CATALOGUE: &[Message] = &[
    m("error", "error: {0}", "エラー: {0}"),
    m("caused_by", "  caused by: {0}", "  原因: {0}"),
    m("detail", "  detail: {0}", "  詳細: {0}"),
    // The summary.
    m("sum.columns", "columns: {0}", "列: {0}"),
    m(
        "sum.branch_in_number",
        " (no 枝番 column: the 枝番 is read from the end of the 番号)",
        "（枝番の列なし: 枝番は番号の末尾 2 桁から読みました）",
    ),
    m(
        "sum.encoding",
        "encoding: input {0}, output {1}",
        "文字コード: 入力 {0}、出力 {1}",
    ),
    m(
        "sum.invalid_rows",
        "invalid rows (left out):",
        "無効な行（除外しました）:",
    ),
    m(
        "sum.more_in_report",
        "  ... and {0} more: the report {1} lists every one",
        "  ... ほか {0} 行: レポート {1} にすべて記載しています",
    ),
    m(
        "sum.more_pass_report",
        "  ... and {0} more: pass --report FILE to list every one",
        "  ... ほか {0} 行: --report ファイル名 を指定するとすべて一覧できます",
    ),
    m(
        "sum.by_reason",
        "report lines by reason (what fixes them):",
        "理由別のレポート行数（対処方法）:",
    ),
    m(
        "sum.every_line",
        "  every line is in the report {0}",
        "  すべての行はレポート {0} にあります",
    ),
    m(
        "sum.rows",
        "rows {0}: linked {1}, not found {2}, invalid {3}",
        "行数 {0}: 名寄せ済み {1}、見つからない {2}、無効 {3}",
    ),
    m(
        "sum.numbers",
        "distinct numbers {0}: found {1}, not found {2}",
        "異なる番号 {0}: 見つかった {1}、見つからない {2}",
    ),
    m("sum.repaired", " ({0} repaired)", "（うち修復 {0}）"),
    m(
        "sum.groups",
        "groups {0} (size:count {1})",
        "グループ（人物） {0}（人数:グループ数 {1}）",
    ),
    m(
        "sum.epoch",
        "epoch {0} of key period {1} ({2} entries) as entity {3} (certificate {5}); {4}",
        "鍵期間 {1} のエポック {0}（{2} 件）、エンティティ {3}（証明書 {5}）。{4}",
    ),
    m(
        "sum.sync.current",
        "the cached table was current",
        "キャッシュの表は最新でした",
    ),
    m(
        "sum.sync.delta",
        "deltas from epoch {0} ({1} added, {2} removed, {3} relabelled)",
        "エポック {0} からの差分（追加 {1}、削除 {2}、ラベル変更 {3}）",
    ),
    m("sum.sync.base", "base download", "表全体をダウンロード"),
    m(
        "sum.sync.resumed",
        "base download, resumed at entry {0}",
        "表全体をダウンロード（{0} 件目から再開）",
    ),
    m("sum.sync.none", "no table needed", "表は不要でした"),
    m(
        "sum.evaluated",
        "evaluated {0} number(s) on the server, {1} from the cache of this key period",
        "サーバーで評価した番号 {0} 件、この鍵期間のキャッシュから {1} 件",
    ),
    m(
        "sum.network",
        "network: sent {0}, received {1}, {2} Evaluate request(s), {3} connection(s)",
        "通信: 送信 {0}、受信 {1}、Evaluate 要求 {2} 回、接続 {3} 回",
    ),
    m(
        "sum.time",
        "time: {0} (total {1}s)",
        "所要時間: {0}（合計 {1} 秒）",
    ),
    m("sum.phase", "{0} {1}s", "{0} {1} 秒"),
    m("phase.read", "read", "読み込み"),
    m("phase.connect", "connect", "接続"),
    m("phase.evaluate", "evaluate", "評価"),
    m("phase.fetch", "fetch", "表の取得"),
    m("phase.write", "write", "書き出し"),
    m("row.line", "line {0}", "{0} 行目"),
    m(
        "row.line_column",
        "line {0}, column {1:?}",
        "{0} 行目、列「{1}」",
    ),
    // Errors, by ClientError kind.
    m(
        "err.invalid_rows",
        "{0} invalid row(s) in {1}; nothing was sent to the server:",
        "{1} に無効な行が {0} 行あります。サーバーには何も送信していません:",
    ),
    m(
        "err.invalid_rows.by_reason",
        "by reason (what fixes it):",
        "理由別（対処方法）:",
    ),
    m(
        "err.missing_setting",
        "missing setting `{0}`: give it in client.toml or on the command line",
        "設定 `{0}` がありません。client.toml またはコマンドラインで指定してください",
    ),
    m(
        "err.config",
        "setting `{0}`: {1}",
        "設定 `{0}` が正しくありません: {1}",
    ),
    m(
        "err.config_file",
        "the settings file could not be read",
        "設定ファイルを読み取れませんでした",
    ),
    m(
        "err.io",
        "a file could not be read or written",
        "ファイルを読み書きできませんでした",
    ),
    m(
        "err.input_output",
        "the input could not be read, or the output or the report could not be written",
        "入力を読み取れないか、出力またはレポートを書き込めませんでした",
    ),
    m(
        "err.credentials",
        "a certificate or key file cannot be used",
        "証明書または鍵のファイルを使用できません",
    ),
    m(
        "err.handshake",
        "the TLS handshake with {0} failed: check --ca and --server-name",
        "{0} との TLS ハンドシェイクに失敗しました。--ca と --server-name を確認してください",
    ),
    m(
        "err.certificate_refused",
        "the server {0} refused this client's certificate; ask the management body whether it is the one they issued and still valid",
        "サーバー {0} がこのクライアントの証明書を拒否しました。管理機関に、発行された証明書であり有効期限内であるかを確認してください",
    ),
    m(
        "err.key_exchange_refused",
        "the server {0} and this client have no TLS key exchange in common: this client offers only the post-quantum X25519MLKEM768 unless allow_classical_key_exchange = true",
        "サーバー {0} とこのクライアントに共通の TLS 鍵交換方式がありません。このクライアントは allow_classical_key_exchange = true でない限り耐量子の X25519MLKEM768 のみを提示します",
    ),
    m(
        "err.unreachable",
        "lost contact with {0}: is the server running and reachable?",
        "{0} との通信が途絶えました。サーバーが動作していて接続できるかを確認してください",
    ),
    m(
        "err.could_not_connect",
        "could not connect to {0}: is the server running, and are the address and port right?",
        "{0} に接続できませんでした。サーバーが動作しているか、アドレスとポートが正しいかを確認してください",
    ),
    m(
        "err.not_accredited",
        "the server does not accredit this client ({0})",
        "サーバーはこのクライアント（{0}）を認定していません",
    ),
    m(
        "err.link",
        "the link run stopped",
        "名寄せの実行が止まりました",
    ),
    m(
        "err.quota",
        "the quota does not allow evaluating the numbers of this run",
        "評価の上限（クォータ）が足りず、この実行の番号を評価できません",
    ),
    m(
        "err.hard_cap",
        "the management body's hard cap on this entity's evaluations is reached: ask the management body (retrying does not help)",
        "管理機関がこのエンティティに設けた評価数の上限（ハードキャップ）に達しました。管理機関に連絡してください（再試行しても解決しません）",
    ),
    m(
        "err.announcement",
        "refused the server: what it says is not covered by the management body's signed announcements; nothing was used and no output was written (check `announcement_keys`, or report this to the management body)",
        "サーバーを拒否しました: 管理機関の署名付き告知で確認できない内容です。何も使わず、出力も書き出していません（`announcement_keys` を確認するか、管理機関に報告してください）",
    ),
    m(
        "err.proof_invalid",
        "the server's proof did not verify; no output was written (report this to the management body)",
        "サーバーの証明を検証できませんでした。出力は書き出していません（管理機関に報告してください）",
    ),
    m(
        "err.server",
        "the server refused a request",
        "サーバーが要求を拒否しました",
    ),
    m(
        "err.protocol",
        "the server broke the protocol (report this to the management body)",
        "サーバーがプロトコルに違反しました（管理機関に報告してください）",
    ),
    m("err.other", "the run failed", "実行に失敗しました"),
    m(
        "err.interrupted",
        "interrupted by {0}: nothing was written and no temporary file is left",
        "{0} により中断しました。何も書き出しておらず、一時ファイルも残っていません",
    ),
    m(
        "err.interrupted_after",
        "interrupted by {0}: no temporary file is left; written before the interruption: {1}",
        "{0} により中断しました。一時ファイルは残っていません。中断の前に書き出したファイル: {1}",
    ),
    m(
        "err.no_output",
        "no output file was written",
        "出力ファイルは書き出していません",
    ),
    // Reasons of report lines and what fixes them (nayose_csv::ReportReason codes).
    m("reason.blank_row", "blank row", "空の行"),
    m("reason.normalized", "value folded", "値を正規化"),
    m("reason.repaired", "repaired", "修復"),
    m(
        "reason.branch_from_number",
        "枝番 read from the 番号",
        "枝番を番号から読み取り",
    ),
    m("reason.empty_value", "empty value", "値が空"),
    m(
        "reason.space_inside_value",
        "space inside the value",
        "値の途中に空白",
    ),
    m(
        "reason.invalid_character",
        "invalid character",
        "使えない文字",
    ),
    m("reason.too_long", "too long", "長すぎる値"),
    m(
        "reason.insurer_length",
        "保険者番号 of the wrong length",
        "保険者番号の桁数が違う",
    ),
    m(
        "reason.check_digit",
        "wrong check digit",
        "検証番号（チェックディジット）が合わない",
    ),
    m(
        "reason.branch_format",
        "枝番 not 2 digits",
        "枝番が 2 桁でない",
    ),
    m("reason.missing_branch", "no 枝番", "枝番がない"),
    m(
        "reason.unexpected_field",
        "記号 or 枝番 where none belongs",
        "不要な記号または枝番",
    ),
    m(
        "reason.combined_form",
        "not a combined number",
        "番号の書式（連結形式）が違う",
    ),
    m("reason.invalid_number", "invalid number", "無効な番号"),
    m(
        "reason.field_count",
        "wrong number of fields",
        "列の数が違う",
    ),
    m("reason.empty_person_id", "empty person id", "個人 ID が空"),
    m("reason.duplicate_row", "repeated row", "重複した行"),
    m(
        "reason.number_conflict",
        "number under two persons",
        "同じ番号が複数の人物に属している",
    ),
    m(
        "hint.blank_row",
        "nothing to fix: rows with no value (empty, or only commas or tabs) are left out",
        "対処不要: 値のない行（空行、カンマやタブだけの行）は除外します",
    ),
    m(
        "hint.normalized",
        "nothing to fix: full-width characters and surrounding spaces are folded before matching",
        "対処不要: 全角文字と前後の空白は照合の前に正規化します",
    ),
    m(
        "hint.repaired",
        "check the restored values; to keep leading zeros, format the number columns as text in Excel before saving",
        "復元した値を確認してください。先頭の 0 を残すには、保存前に Excel で番号の列を文字列の書式にしてください",
    ),
    m(
        "hint.branch_from_number",
        "the file has no 枝番 column, so the last 2 digits of the 番号 were read as the 枝番; if the 番号 holds no 枝番, add a 枝番 column and name it with --branch-column",
        "枝番の列がないため、番号の末尾 2 桁を枝番として読みました。番号に枝番が含まれない場合は枝番の列を追加し、--branch-column で指定してください",
    ),
    m(
        "hint.empty_value",
        "correct the value, or pass --skip-invalid to leave invalid rows out",
        "値を修正するか、--skip-invalid を指定して無効な行を除外してください",
    ),
    m(
        "hint.space_inside_value",
        "correct the value, or pass --skip-invalid to leave invalid rows out",
        "値を修正するか、--skip-invalid を指定して無効な行を除外してください",
    ),
    m(
        "hint.invalid_character",
        "correct the value; if a whole column is wrong, check the column mapping with --insurer-column, --symbol-column, --number-column, --branch-column",
        "値を修正してください。列全体が誤っている場合は --insurer-column、--symbol-column、--number-column、--branch-column で列の対応を確認してください",
    ),
    m(
        "hint.too_long",
        "correct the value; if a whole column is wrong, check the column mapping with --insurer-column, --symbol-column, --number-column, --branch-column",
        "値を修正してください。列全体が誤っている場合は --insurer-column、--symbol-column、--number-column、--branch-column で列の対応を確認してください",
    ),
    m(
        "hint.insurer_length",
        "pass --repair to restore lost leading zeros (checked by the check digit), or correct the 保険者番号",
        "--repair を指定すると失われた先頭の 0 を復元します（検証番号で確認します）。または保険者番号を修正してください",
    ),
    m(
        "hint.check_digit",
        "correct the 保険者番号 (its check digit does not match), or pass --skip-invalid to leave invalid rows out",
        "保険者番号を修正するか（検証番号が合いません）、--skip-invalid を指定して無効な行を除外してください",
    ),
    m(
        "hint.branch_format",
        "pass --repair to restore the lost leading zero of a 1-digit 枝番, or correct the 枝番",
        "--repair を指定すると 1 桁の枝番の先頭の 0 を復元します。または枝番を修正してください",
    ),
    m(
        "hint.missing_branch",
        "add the 2-digit 枝番 (a number without it is the household-level form), or pass --skip-invalid to leave invalid rows out",
        "2 桁の枝番を加えるか（枝番のない番号は世帯単位の番号です）、--skip-invalid を指定して無効な行を除外してください",
    ),
    m(
        "hint.unexpected_field",
        "法別番号 39 numbers have no 記号 and no 枝番: clear those cells, or check the column mapping",
        "法別番号 39 の番号には記号も枝番もありません。そのセルを空にするか、列の対応を確認してください",
    ),
    m(
        "hint.combined_form",
        "write the number as insurer-symbol-number followed by the 2-digit 枝番, or insurer:symbol:number:branch; or name the separate columns with --insurer-column, --symbol-column, --number-column",
        "番号を「保険者番号-記号-番号」に 2 桁の枝番を続けた形か「保険者番号:記号:番号:枝番」の形で書くか、--insurer-column、--symbol-column、--number-column で個別の列を指定してください",
    ),
    m(
        "hint.invalid_number",
        "correct the value, or pass --skip-invalid to leave invalid rows out",
        "値を修正するか、--skip-invalid を指定して無効な行を除外してください",
    ),
    m(
        "hint.field_count",
        "check the row's quoting, and that the delimiter is right (--delimiter comma or --delimiter tab)",
        "行の引用符と、区切り文字が正しいか（--delimiter comma または --delimiter tab）を確認してください",
    ),
    m(
        "hint.empty_person_id",
        "fill in the person id, or pass --skip-invalid to leave invalid rows out",
        "個人 ID を入力するか、--skip-invalid を指定して無効な行を除外してください",
    ),
    m(
        "hint.duplicate_row",
        "nothing to fix: a number repeated under the same person is published once",
        "対処不要: 同じ人物の下で繰り返された番号は 1 回だけ公開します",
    ),
    m(
        "hint.number_conflict",
        "correct the registry: one number belongs to one person; until then the number is left out of the table (no client can link it)",
        "台帳を修正してください。1 つの番号は 1 人の人物に属します。修正までその番号は表から除外します（どのクライアントも名寄せできません）",
    ),
];

/// The text of `key` in `lang` with `{0}`, `{1}`, … replaced by `args` (`{1:?}` quotes the
/// argument in English). An unknown key gives the key itself.
pub(crate) fn t(lang: Lang, key: &str, args: &[&dyn std::fmt::Display]) -> String {
    let Some(msg) = CATALOGUE.iter().find(|m| m.key == key) else {
        return key.to_owned();
    };
    let mut text = match lang {
        Lang::En => msg.en,
        Lang::Ja => msg.ja,
    }
    .to_owned();
    for (i, a) in args.iter().enumerate() {
        text = text
            .replace(&format!("{{{i}:?}}"), &format!("{:?}", a.to_string()))
            .replace(&format!("{{{i}}}"), &a.to_string());
    }
    text
}

/// The summary of a link run in `lang` (English: the summary's own `Display`).
pub(crate) fn summary_text(lang: Lang, s: &LinkSummary) -> String {
    if lang == Lang::En {
        return s.to_string();
    }
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    if !s.columns.is_empty() {
        let order = [
            "insured_number",
            "insurer_number",
            "symbol",
            "number",
            "branch",
        ];
        let cols: Vec<String> = order
            .iter()
            .filter_map(|f| s.columns.get(*f).map(|h| format!("{h} → {f}")))
            .collect();
        let extra = if s.branch_in_number {
            t(lang, "sum.branch_in_number", &[])
        } else {
            String::new()
        };
        line(t(
            lang,
            "sum.columns",
            &[&format!("{}{extra}", cols.join("、"))],
        ));
    }
    if !s.input_encoding.is_empty() {
        line(t(
            lang,
            "sum.encoding",
            &[&s.input_encoding, &s.output_encoding],
        ));
    }
    if !s.invalid_example_rows.is_empty() {
        line(t(lang, "sum.invalid_rows", &[]));
        let shown = s.invalid_example_rows.len().min(summary::SHOWN_INVALID);
        for r in &s.invalid_example_rows[..shown] {
            line(format!("  {}", row_text(lang, r)));
        }
        let rest = s.invalid_rows.saturating_sub(shown as u64);
        if rest > 0 {
            line(match &s.report {
                Some(r) => t(lang, "sum.more_in_report", &[&rest, r]),
                None => t(lang, "sum.more_pass_report", &[&rest]),
            });
        }
    }
    if !s.report_counts.is_empty() {
        line(t(lang, "sum.by_reason", &[]));
        for r in nayose_client::ReportReason::ALL {
            if let Some(n) = s.report_counts.get(r.code()) {
                line(format!("  {}", reason_line(lang, r.code(), *n)));
            }
        }
        if let Some(r) = &s.report {
            line(t(lang, "sum.every_line", &[r]));
        }
    }
    line(t(
        lang,
        "sum.rows",
        &[&s.rows, &s.linked_rows, &s.not_found_rows, &s.invalid_rows],
    ));
    let repaired = if s.repaired > 0 {
        t(lang, "sum.repaired", &[&s.repaired])
    } else {
        String::new()
    };
    line(format!(
        "{}{repaired}",
        t(
            lang,
            "sum.numbers",
            &[&s.distinct_numbers, &s.linked_numbers, &s.not_found_numbers]
        )
    ));
    let hist: Vec<String> = s
        .group_size_histogram
        .iter()
        .map(|(size, n)| format!("{size}:{n}"))
        .collect();
    let hist = if hist.is_empty() {
        "-".to_owned()
    } else {
        hist.join(" ")
    };
    line(t(lang, "sum.groups", &[&s.groups, &hist]));
    let sync = match s.sync.kind.as_str() {
        "current" => t(lang, "sum.sync.current", &[]),
        "delta" => t(
            lang,
            "sum.sync.delta",
            &[
                &s.sync.from.unwrap_or(0),
                &s.sync.added,
                &s.sync.removed,
                &s.sync.relabelled,
            ],
        ),
        "base" => match s.sync.resumed_from {
            Some(n) if n > 0 => t(lang, "sum.sync.resumed", &[&n]),
            _ => t(lang, "sum.sync.base", &[]),
        },
        _ => t(lang, "sum.sync.none", &[]),
    };
    line(t(
        lang,
        "sum.epoch",
        &[
            &s.epoch,
            &s.key_period,
            &s.table_entries,
            &s.entity,
            &sync,
            &s.client_id,
        ],
    ));
    line(t(
        lang,
        "sum.evaluated",
        &[&s.evaluated_numbers, &s.numbers_from_cache],
    ));
    line(t(
        lang,
        "sum.network",
        &[
            &summary::bytes(s.bytes_sent),
            &summary::bytes(s.bytes_received),
            &s.evaluate_requests,
            &s.connections,
        ],
    ));
    let phases: Vec<String> = Phase::ALL
        .iter()
        .map(|p| {
            let ms = s.phase_ms.get(p).copied().unwrap_or(0);
            t(
                lang,
                "sum.phase",
                &[
                    &t(lang, &format!("phase.{}", p.name()), &[]),
                    &format!("{:.2}", ms as f64 / 1000.0),
                ],
            )
        })
        .collect();
    let total = format!("{:.2}", s.total_ms as f64 / 1000.0);
    out.push_str(&t(lang, "sum.time", &[&phases.join("、"), &total]));
    out
}

/// `line 3, column "保険者番号": 保険者番号の桁数が違う (insurer_length)`.
fn row_text(lang: Lang, (line, column, code): &(u64, Option<String>, String)) -> String {
    let at = match column {
        Some(c) => t(lang, "row.line_column", &[line, c]),
        None => t(lang, "row.line", &[line]),
    };
    format!("{at}: {} ({code})", t(lang, &format!("reason.{code}"), &[]))
}

/// `insurer_length 3: 保険者番号の桁数が違う — --repair を指定すると…`.
fn reason_line(lang: Lang, code: &str, n: u64) -> String {
    format!(
        "{code} {n}: {} — {}",
        t(lang, &format!("reason.{code}"), &[]),
        t(lang, &format!("hint.{code}"), &[])
    )
}

/// The lines printed on stderr for a failed run: in English the error and its causes as
/// always; in Japanese a Japanese account (for invalid rows: every row shown and every reason
/// with what fixes it) and the English details after it.
pub(crate) fn error_lines(lang: Lang, e: &anyhow::Error) -> Vec<String> {
    let mut lines = vec![t(lang, "error", &[&e])];
    if lang == Lang::En {
        lines.extend(e.chain().skip(1).map(|c| t(lang, "caused_by", &[&c])));
        return lines;
    }
    let client = e.chain().find_map(|c| c.downcast_ref::<ClientError>());
    let Some(ce) = client else {
        lines.extend(e.chain().skip(1).map(|c| t(lang, "caused_by", &[&c])));
        return lines;
    };
    lines.clear();
    let lead = match ce {
        ClientError::InvalidRows {
            input,
            total,
            detail,
            report,
            ..
        } => {
            let (shown_rows, reason_counts) = (&detail.shown_rows, &detail.reason_counts);
            let head = t(lang, "err.invalid_rows", &[total, &input.display()]);
            let mut v = vec![t(lang, "error", &[&head])];
            v.extend(
                shown_rows
                    .iter()
                    .map(|r| format!("  {}", row_text(lang, r))),
            );
            let rest = total.saturating_sub(shown_rows.len() as u64);
            if rest > 0 {
                v.push(match report {
                    Some(r) => t(lang, "sum.more_in_report", &[&rest, &r.display()]),
                    None => t(lang, "sum.more_pass_report", &[&rest]),
                });
            }
            v.push(t(lang, "err.invalid_rows.by_reason", &[]));
            v.extend(
                reason_counts
                    .iter()
                    .map(|(code, n)| format!("  {}", reason_line(lang, code, *n))),
            );
            lines.extend(v);
            lines.push(t(lang, "err.no_output", &[]));
            return lines;
        }
        ClientError::MissingSetting { setting } => t(lang, "err.missing_setting", &[setting]),
        ClientError::Config { setting, reason } => t(lang, "err.config", &[setting, reason]),
        ClientError::Handshake { server, .. } => t(lang, "err.handshake", &[server]),
        ClientError::CertificateRefused { server, .. } => {
            t(lang, "err.certificate_refused", &[server])
        }
        ClientError::KeyExchangeRefused { server, .. } => {
            t(lang, "err.key_exchange_refused", &[server])
        }
        ClientError::Unreachable { server, .. } => t(lang, "err.unreachable", &[server]),
        ClientError::CouldNotConnect { server, .. } => t(lang, "err.could_not_connect", &[server]),
        ClientError::NotAccredited { client_id, .. } => t(lang, "err.not_accredited", &[client_id]),
        ClientError::Link(ProtoError::Quota { .. }) => t(lang, "err.quota", &[]),
        ClientError::Link(ProtoError::HardCap { .. }) => t(lang, "err.hard_cap", &[]),
        ClientError::Link(ProtoError::Announcement { .. }) => t(lang, "err.announcement", &[]),
        other => t(lang, &format!("err.{}", other.kind()), &[]),
    };
    let lead = if lead.starts_with("err.") {
        t(lang, "err.other", &[])
    } else {
        lead
    };
    lines.push(t(lang, "error", &[&lead]));
    let mut detail = String::new();
    for (i, c) in e.chain().enumerate() {
        if i > 0 {
            detail.push_str(": ");
        }
        let _ = write!(detail, "{c}");
    }
    lines.push(t(lang, "detail", &[&detail]));
    lines.push(t(lang, "err.no_output", &[]));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashSet};

    fn placeholders(s: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut rest = s;
        while let Some(i) = rest.find('{') {
            rest = &rest[i + 1..];
            if let Some(j) = rest.find('}') {
                out.insert(rest[..j].trim_end_matches(":?").to_owned());
                rest = &rest[j + 1..];
            }
        }
        out
    }

    #[test]
    fn every_english_key_has_a_japanese_text_with_the_same_placeholders() {
        let mut keys = HashSet::new();
        for m in CATALOGUE {
            assert!(keys.insert(m.key), "duplicate key {}", m.key);
            assert!(!m.en.is_empty(), "{}: no English text", m.key);
            assert!(!m.ja.is_empty(), "{}: no Japanese text", m.key);
            assert_ne!(m.en, m.ja, "{}: not translated", m.key);
            assert_eq!(
                placeholders(m.en),
                placeholders(m.ja),
                "{}: placeholders differ",
                m.key
            );
        }
    }

    #[test]
    fn every_reason_code_has_a_label_and_a_hint_in_both_languages() {
        for r in nayose_client::ReportReason::ALL {
            for prefix in ["reason", "hint"] {
                let key = format!("{prefix}.{}", r.code());
                assert!(CATALOGUE.iter().any(|m| m.key == key), "{key} is missing");
            }
            // The English hint is the library's own.
            assert_eq!(t(Lang::En, &format!("hint.{}", r.code()), &[]), r.hint());
        }
    }

    #[test]
    fn the_locale_selects_japanese_and_the_flag_wins() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(Lang::from_locale(env(&[("LANG", "ja_JP.UTF-8")])), Lang::Ja);
        assert_eq!(
            Lang::from_locale(env(&[("LC_ALL", "C"), ("LANG", "ja_JP.UTF-8")])),
            Lang::En
        );
        assert_eq!(
            Lang::from_locale(env(&[("LC_ALL", ""), ("LANG", "ja_JP.UTF-8")])),
            Lang::Ja
        );
        assert_eq!(Lang::from_locale(env(&[])), Lang::En);
        assert_eq!(Lang::select(Some("ja")), Ok(Lang::Ja));
        assert_eq!(Lang::select(Some("EN")), Ok(Lang::En));
        assert!(Lang::select(Some("fr")).is_err());
    }

    #[test]
    fn placeholders_are_filled() {
        assert_eq!(
            t(Lang::Ja, "sum.rows", &[&10, &8, &1, &1]),
            "行数 10: 名寄せ済み 8、見つからない 1、無効 1"
        );
        assert_eq!(
            t(Lang::En, "row.line_column", &[&3, &"保険者番号"]),
            "line 3, column \"保険者番号\""
        );
        assert_eq!(t(Lang::Ja, "no.such.key", &[]), "no.such.key");
    }
}
