//! Text encodings of input and output files: detection, streaming decoding to UTF-8, and
//! encoding back without silent replacement.
//!
//! Invariants:
//! * detection ([`detect_encoding`]) reads the input once, in fixed-size chunks (memory does not
//!   grow with the file): a UTF-16 BOM (`FF FE` or `FE FF`, as Excel's "Unicode text" writes)
//!   means UTF-16LE or UTF-16BE; a UTF-8 BOM means UTF-8; otherwise input that is valid UTF-8
//!   throughout is UTF-8; anything else is CP932 (WHATWG `Shift_JIS`, which is Microsoft's CP932);
//! * a UTF-16 BOM wins over an explicit choice ([`TextEncoding::resolve`]): `FF FE` / `FE FF`
//!   can start neither UTF-8 nor CP932 text, so such a file can only be UTF-16;
//! * a file that starts like a ZIP archive (`PK\x03\x04`, an .xlsx workbook) or an OLE2 compound
//!   file (an old .xls workbook) is [`TextEncoding::Workbook`], whatever the encoding choice: it
//!   is read cell by cell (`workbook.rs`), never decoded as text;
//! * [`DecodingReader`] decodes chunk by chunk and fails on a malformed byte sequence, reporting
//!   the 1-based line and byte offset, instead of substituting U+FFFD;
//! * output (`encode_row`, in an [`OutputEncoding`]) fails on a character the encoding cannot
//!   represent.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::str::FromStr;

use encoding_rs::{DecoderResult, EncoderResult, SHIFT_JIS, UTF_8, UTF_16BE, UTF_16LE};

use crate::error::CsvError;
use crate::workbook;

const CHUNK: usize = 64 * 1024;
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";
const UTF16LE_BOM: &[u8] = b"\xFF\xFE";
const UTF16BE_BOM: &[u8] = b"\xFE\xFF";

/// The encoding the user asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EncodingChoice {
    /// Detect (the default): BOM → UTF-8, valid UTF-8 → UTF-8, else CP932.
    #[default]
    Auto,
    /// UTF-8, with or without BOM.
    Utf8,
    /// CP932 / Shift_JIS.
    Cp932,
}

impl FromStr for EncodingChoice {
    type Err = CsvError;

    /// Accepts `auto`, `utf-8`/`utf8`, `cp932`/`shift_jis`/`shift-jis`/`sjis`/`windows-31j`
    /// (ASCII case-insensitive).
    fn from_str(s: &str) -> Result<Self, CsvError> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(EncodingChoice::Auto),
            "utf-8" | "utf8" => Ok(EncodingChoice::Utf8),
            "cp932" | "shift_jis" | "shift-jis" | "sjis" | "windows-31j" => {
                Ok(EncodingChoice::Cp932)
            }
            _ => Err(CsvError::UnknownEncoding(s.to_owned())),
        }
    }
}

/// A resolved encoding of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEncoding {
    /// UTF-8; `bom` tells whether the file starts with a byte-order mark (kept on output).
    Utf8 {
        /// Whether the file starts with a UTF-8 BOM.
        bom: bool,
    },
    /// CP932 (Shift_JIS with Microsoft's extensions).
    Cp932,
    /// UTF-16, little-endian, with a BOM (Excel's "Unicode text" export).
    Utf16Le,
    /// UTF-16, big-endian, with a BOM.
    Utf16Be,
    /// Not a text encoding: the file is an Excel workbook (or an OpenDocument spreadsheet),
    /// whose first sheet is read cell by cell; its cells are text already.
    Workbook,
}

impl TextEncoding {
    /// A short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            TextEncoding::Utf8 { .. } => "UTF-8",
            TextEncoding::Cp932 => "CP932",
            TextEncoding::Utf16Le => "UTF-16LE",
            TextEncoding::Utf16Be => "UTF-16BE",
            TextEncoding::Workbook => "Excel workbook",
        }
    }

    /// Resolves `choice` for the file at `path`: reads its first bytes (a workbook or a UTF-16
    /// BOM decides), then the whole file once if `choice` is `Auto`.
    pub fn resolve(path: &Path, choice: EncodingChoice) -> Result<Self, CsvError> {
        let io = |source| CsvError::Io {
            path: path.to_owned(),
            source,
        };
        let mut f = File::open(path).map_err(io)?;
        let mut head = [0u8; 8];
        let n = read_up_to(&mut f, &mut head).map_err(io)?;
        let head = &head[..n];
        if workbook::format_of(head).is_some() {
            return Ok(TextEncoding::Workbook);
        }
        if let Some(utf16) = utf16_bom(head) {
            return Ok(utf16);
        }
        match choice {
            EncodingChoice::Cp932 => Ok(TextEncoding::Cp932),
            EncodingChoice::Auto => {
                let f = File::open(path).map_err(io)?;
                detect_encoding(BufReader::new(f)).map_err(io)
            }
            EncodingChoice::Utf8 => Ok(TextEncoding::Utf8 {
                bom: head.starts_with(UTF8_BOM),
            }),
        }
    }
}

fn utf16_bom(head: &[u8]) -> Option<TextEncoding> {
    if head.starts_with(UTF16LE_BOM) {
        Some(TextEncoding::Utf16Le)
    } else if head.starts_with(UTF16BE_BOM) {
        Some(TextEncoding::Utf16Be)
    } else {
        None
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Detects the encoding of a whole stream in constant memory (see the module invariants).
pub fn detect_encoding<R: Read>(mut reader: R) -> io::Result<TextEncoding> {
    let mut buf = vec![0u8; CHUNK];
    let mut head = [0u8; 8];
    let n = read_up_to(&mut reader, &mut head)?;
    if workbook::format_of(&head[..n]).is_some() {
        return Ok(TextEncoding::Workbook);
    }
    if let Some(utf16) = utf16_bom(&head[..n]) {
        return Ok(utf16);
    }
    if head[..n].starts_with(UTF8_BOM) {
        return Ok(TextEncoding::Utf8 { bom: true });
    }
    // `carry` holds an incomplete UTF-8 sequence at the end of the previous chunk.
    buf[..n].copy_from_slice(&head[..n]);
    let mut len = n;
    loop {
        let k = read_up_to(&mut reader, &mut buf[len..])?;
        len += k;
        let eof = k == 0 || len < buf.len();
        match std::str::from_utf8(&buf[..len]) {
            Ok(_) => len = 0,
            Err(e) if e.error_len().is_none() && !eof => {
                let start = e.valid_up_to();
                buf.copy_within(start..len, 0);
                len -= start;
            }
            Err(_) => return Ok(TextEncoding::Cp932),
        }
        if eof {
            return Ok(TextEncoding::Utf8 { bom: false });
        }
    }
}

/// The payload of the `io::Error` a [`DecodingReader`] returns on malformed input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed {
    pub(crate) line: u64,
    pub(crate) offset: u64,
    pub(crate) encoding: &'static str,
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {}: byte offset {}: invalid {} bytes",
            self.line, self.offset, self.encoding
        )
    }
}

impl std::error::Error for Malformed {}

/// A `Read` adaptor decoding a byte stream in `encoding` to UTF-8, chunk by chunk; a BOM is
/// removed. Malformed input is an `io::Error` of kind `InvalidData` (mapped to
/// [`CsvError::Decode`] by the readers of this crate).
pub struct DecodingReader<R> {
    inner: R,
    decoder: encoding_rs::Decoder,
    encoding: &'static str,
    input: Vec<u8>,
    in_pos: usize,
    in_len: usize,
    consumed: u64,
    output: Vec<u8>,
    out_pos: usize,
    out_len: usize,
    newlines: u64,
    /// Offset (in the decoded stream) of every CR and LF emitted and not yet retired, so that a
    /// record's first line can be computed exactly (see [`DecodingReader::line_of_record`]).
    marks: VecDeque<(u64, u8)>,
    emitted: u64,
    retired_newlines: u64,
    eof: bool,
    done: bool,
}

impl<R: Read> DecodingReader<R> {
    /// Wraps `inner`, decoding from `encoding`.
    pub fn new(inner: R, encoding: TextEncoding) -> Self {
        let decoder = match encoding {
            // A workbook is never decoded (the readers read it cell by cell); as text it would
            // be UTF-8 at best.
            TextEncoding::Utf8 { .. } | TextEncoding::Workbook => {
                UTF_8.new_decoder_with_bom_removal()
            }
            TextEncoding::Cp932 => SHIFT_JIS.new_decoder_without_bom_handling(),
            TextEncoding::Utf16Le => UTF_16LE.new_decoder_with_bom_removal(),
            TextEncoding::Utf16Be => UTF_16BE.new_decoder_with_bom_removal(),
        };
        DecodingReader {
            inner,
            decoder,
            encoding: encoding.name(),
            input: vec![0; CHUNK],
            in_pos: 0,
            in_len: 0,
            consumed: 0,
            output: vec![0; CHUNK * 2],
            out_pos: 0,
            out_len: 0,
            newlines: 0,
            marks: VecDeque::new(),
            emitted: 0,
            retired_newlines: 0,
            eof: false,
            done: false,
        }
    }

    fn fill(&mut self) -> io::Result<()> {
        if self.in_pos == self.in_len && !self.eof {
            loop {
                match self.inner.read(&mut self.input) {
                    Ok(0) => {
                        self.eof = true;
                        break;
                    }
                    Ok(n) => {
                        self.in_pos = 0;
                        self.in_len = n;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        // Decode what there is into `output`.
        self.out_pos = 0;
        let src = &self.input[self.in_pos..self.in_len];
        let (result, read, written) =
            self.decoder
                .decode_to_utf8_without_replacement(src, &mut self.output, self.eof);
        self.in_pos += read;
        self.consumed += read as u64;
        self.out_len = written;
        for (i, &b) in self.output[..written].iter().enumerate() {
            if b == b'\n' || b == b'\r' {
                self.marks.push_back((self.emitted + i as u64, b));
                self.newlines += u64::from(b == b'\n');
            }
        }
        self.emitted += written as u64;
        match result {
            DecoderResult::InputEmpty => {
                if self.eof {
                    self.done = true;
                }
                Ok(())
            }
            DecoderResult::OutputFull => Ok(()),
            DecoderResult::Malformed(bad, after) => {
                let offset = self.consumed - u64::from(bad) - u64::from(after);
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    Malformed {
                        line: self.newlines + 1,
                        offset,
                        encoding: self.encoding,
                    },
                ))
            }
        }
    }
}

impl<R> DecodingReader<R> {
    /// The 1-based line on which the record whose parse began at decoded-stream offset `start`
    /// (the CSV parser's record position) has its first character: line terminators and blank
    /// lines between `start` and the record's first character are skipped. Must be called once
    /// per record, in order; it forgets the line ends before the record.
    pub(crate) fn line_of_record(&mut self, start: u64) -> u64 {
        let mut at = start;
        while let Some(&(offset, byte)) = self.marks.front() {
            if offset <= at {
                if offset == at {
                    at += 1;
                }
                self.retired_newlines += u64::from(byte == b'\n');
                self.marks.pop_front();
            } else {
                break;
            }
        }
        self.retired_newlines + 1
    }
}

impl<R: Read> Read for DecodingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.out_pos < self.out_len {
                let n = buf.len().min(self.out_len - self.out_pos);
                buf[..n].copy_from_slice(&self.output[self.out_pos..self.out_pos + n]);
                self.out_pos += n;
                return Ok(n);
            }
            if self.done || buf.is_empty() {
                return Ok(0);
            }
            self.fill()?;
        }
    }
}

/// Maps an error from reading a [`DecodingReader`] to a [`CsvError`].
pub(crate) fn map_io_error(io: io::Error) -> CsvError {
    if let Some(m) = io.get_ref().and_then(|x| x.downcast_ref::<Malformed>()) {
        CsvError::Decode {
            line: m.line,
            offset: m.offset,
            encoding: m.encoding,
        }
    } else {
        CsvError::Stream(io)
    }
}

/// Maps an error from the CSV parser over a [`DecodingReader`] to a [`CsvError`].
pub(crate) fn map_csv_error(e: csv::Error, line_hint: u64) -> CsvError {
    let line = e.position().map_or(line_hint, |p| p.line());
    match e.into_kind() {
        csv::ErrorKind::Io(io) => map_io_error(io),
        kind => CsvError::Syntax {
            line,
            message: format!("{kind:?}"),
        },
    }
}

/// The encoding of a file this crate writes (the output and the row report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputEncoding {
    /// UTF-8 starting with a byte-order mark (what Excel needs to open UTF-8 CSV correctly).
    Utf8Bom,
    /// UTF-8 without a byte-order mark.
    Utf8,
    /// CP932; a character CP932 cannot represent is an error, never replaced.
    Cp932,
}

impl OutputEncoding {
    /// The output encoding that keeps an input's: UTF-8 keeps its BOM or its lack of one, CP932
    /// stays CP932, and UTF-16 (which this crate does not write) and a workbook become UTF-8
    /// with a BOM, which Excel opens without garbling Japanese.
    pub fn like_input(input: TextEncoding) -> Self {
        match input {
            TextEncoding::Utf8 { bom: false } => OutputEncoding::Utf8,
            TextEncoding::Cp932 => OutputEncoding::Cp932,
            TextEncoding::Utf8 { bom: true }
            | TextEncoding::Utf16Le
            | TextEncoding::Utf16Be
            | TextEncoding::Workbook => OutputEncoding::Utf8Bom,
        }
    }

    /// The name [`OutputEncoding::from_str`] accepts first: `utf-8-bom`, `utf-8` or `cp932`.
    pub fn name(self) -> &'static str {
        match self {
            OutputEncoding::Utf8Bom => "utf-8-bom",
            OutputEncoding::Utf8 => "utf-8",
            OutputEncoding::Cp932 => "cp932",
        }
    }

    /// The bytes a file in this encoding starts with.
    pub(crate) fn bom(self) -> &'static [u8] {
        match self {
            OutputEncoding::Utf8Bom => UTF8_BOM,
            _ => b"",
        }
    }
}

impl FromStr for OutputEncoding {
    type Err = CsvError;

    /// Accepts `utf-8-bom`/`utf8-bom`/`utf-8-sig`, `utf-8`/`utf8`, and
    /// `cp932`/`shift_jis`/`shift-jis`/`sjis`/`windows-31j` (ASCII case-insensitive).
    fn from_str(s: &str) -> Result<Self, CsvError> {
        match s.to_ascii_lowercase().as_str() {
            "utf-8-bom" | "utf8-bom" | "utf-8-sig" => Ok(OutputEncoding::Utf8Bom),
            "utf-8" | "utf8" => Ok(OutputEncoding::Utf8),
            "cp932" | "shift_jis" | "shift-jis" | "sjis" | "windows-31j" => {
                Ok(OutputEncoding::Cp932)
            }
            _ => Err(CsvError::UnknownOutputEncoding(s.to_owned())),
        }
    }
}

/// Encodes one complete output row (UTF-8 text) in `encoding`, appending to `out`. On a character
/// CP932 cannot represent, returns it (the caller names line and column).
pub(crate) fn encode_row(
    text: &str,
    encoding: OutputEncoding,
    out: &mut Vec<u8>,
) -> Result<(), char> {
    match encoding {
        OutputEncoding::Utf8 | OutputEncoding::Utf8Bom => {
            out.extend_from_slice(text.as_bytes());
            Ok(())
        }
        OutputEncoding::Cp932 => {
            let mut encoder = SHIFT_JIS.new_encoder();
            let mut src = text;
            let start = out.len();
            let max = encoder
                .max_buffer_length_from_utf8_without_replacement(src.len())
                .unwrap_or(src.len() * 2 + 16);
            out.resize(start + max, 0);
            let mut written = 0;
            loop {
                let (res, read, w) = encoder.encode_from_utf8_without_replacement(
                    src,
                    &mut out[start + written..],
                    true,
                );
                written += w;
                src = &src[read..];
                match res {
                    EncoderResult::InputEmpty => break,
                    EncoderResult::Unmappable(c) => {
                        out.truncate(start);
                        return Err(c);
                    }
                    EncoderResult::OutputFull => {
                        let more = out.len() + src.len() * 2 + 16;
                        out.resize(more, 0);
                    }
                }
            }
            out.truncate(start + written);
            Ok(())
        }
    }
}
