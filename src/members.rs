//! Member records and member files (CSV / JSONL): the shape a CRM feeds in, shared
//! by `almanac members import`, the admin API, and `plan`/`simulate --members`.
//!
//! Files are streamed line by line: one member per line (CSV fields may be
//! quoted and contain commas and doubled quotes, but not line breaks), so a bad
//! row never hides the rows after it. Every bad row comes back as a [`RowError`]
//! with its 1-based row number and the reason; the caller imports the rest.
//! [`import`] upserts a stream of rows in batches (resolving each member's place
//! as it goes), [`export`] writes members back out in either format.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

use crate::geo::{Geo, Place};
use crate::store::{Resolution, Store, Written};

/// One member as the CRM describes it. `external_id` is the CRM's key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// The CRM's id (unique).
    pub external_id: String,
    /// WeChat openid for the brand's Official Account.
    #[serde(default)]
    pub openid: Option<String>,
    /// Display name used in templates.
    #[serde(default)]
    pub name: Option<String>,
    /// Phone, normalized to E.164 on import.
    #[serde(default)]
    pub phone: Option<String>,
    /// Stated city.
    #[serde(default)]
    pub city: Option<String>,
    /// Stated province (disambiguates the city).
    #[serde(default)]
    pub province: Option<String>,
    /// Latitude.
    #[serde(default)]
    pub lat: Option<f64>,
    /// Longitude.
    #[serde(default)]
    pub lon: Option<f64>,
    /// Last known IP address.
    #[serde(default)]
    pub ip: Option<String>,
    /// The member's own language (BCP-47).
    #[serde(default)]
    pub lang: Option<String>,
    /// Tags for audience filters.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Free attributes, usable in templates as `attrs.<key>`.
    #[serde(default)]
    pub attrs: BTreeMap<String, String>,
    /// When the member opted out (unsubscribed), if they did.
    #[serde(default)]
    pub opted_out_at: Option<DateTime<Utc>>,
    /// The member's own last interaction (WeChat callback events).
    #[serde(default)]
    pub last_interaction_at: Option<DateTime<Utc>>,
}

/// A bad row in a member file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}: row {row}: {reason}")]
pub struct RowError {
    /// File name.
    pub file: String,
    /// 1-based data row number (the CSV header is not a row).
    pub row: u64,
    /// What was wrong and what was expected.
    pub reason: String,
}

/// Errors that stop reading a file altogether.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// File path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Neither `.csv` nor `.jsonl`/`.ndjson`.
    #[error("{0}: unknown member file format (expected .csv, .jsonl or .ndjson)")]
    Format(String),
    /// The CSV header is unusable.
    #[error("{path}: line 1 (header): {reason}")]
    Header {
        /// File path.
        path: String,
        /// What was wrong and what was expected.
        reason: String,
    },
    /// The database failed during an import or export.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// Writing an export failed.
    #[error("writing the export: {0}")]
    Write(String),
}

/// Largest accepted field (bytes).
pub const MAX_FIELD_BYTES: usize = 64 * 1024;

/// Longest line kept in memory; longer ones are skipped to their end unread.
const MAX_LINE_BYTES: usize = 1024 * 1024;

/// Member file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// CSV with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl Format {
    /// The format a file name's extension says, if any.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv),
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            _ => None,
        }
    }
}

/// A member file's character encoding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Encoding {
    /// UTF-8 (a byte-order mark is skipped).
    #[default]
    #[value(name = "utf-8")]
    Utf8,
    /// GB18030, which contains GBK and GB2312: Excel's "CSV" on Chinese Windows.
    #[value(name = "gb18030", alias = "gbk")]
    Gb18030,
}

/// Streams a UTF-8 member file (format by extension), yielding each row or its
/// error.
pub fn read_file(
    path: &Path,
) -> Result<Box<dyn Iterator<Item = Result<Member, RowError>> + Send>, Error> {
    read_file_encoded(path, Encoding::Utf8)
}

/// [`read_file`] for a file in `encoding` (decoded to UTF-8 as it is read).
pub fn read_file_encoded(
    path: &Path,
    encoding: Encoding,
) -> Result<Box<dyn Iterator<Item = Result<Member, RowError>> + Send>, Error> {
    let name = path.display().to_string();
    let format = Format::from_path(path).ok_or_else(|| Error::Format(name.clone()))?;
    let file = File::open(path).map_err(|source| Error::Io { path: name.clone(), source })?;
    match encoding {
        Encoding::Utf8 => read(BufReader::new(file), format, &name),
        Encoding::Gb18030 => {
            let decoded = encoding_rs_io::DecodeReaderBytesBuilder::new()
                .encoding(Some(encoding_rs::GB18030))
                .build(file);
            read(decoded, format, &name)
        }
    }
}

/// Why bytes are not UTF-8, and a hint when they read as Chinese in GB18030 /
/// GBK (the encoding Excel writes "CSV" in on Chinese Windows).
fn not_utf8(bytes: &[u8], error: std::str::Utf8Error) -> String {
    let mut message = format!("not valid UTF-8 (byte {})", error.valid_up_to() + 1);
    let chinese = encoding_rs::GB18030
        .decode_without_bom_handling_and_without_replacement(bytes)
        .is_some_and(|text| text.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)));
    if chinese {
        message.push_str(
            "; it reads as Chinese in GBK/GB18030 (Excel's CSV on Chinese Windows): import it \
             with `--encoding gb18030`, or convert it with `iconv -f GB18030 -t UTF-8`",
        );
    }
    message
}

/// Streams members from any reader in the given format; `name` labels errors.
pub fn read<R: Read + Send + 'static>(
    reader: R,
    format: Format,
    name: &str,
) -> Result<Box<dyn Iterator<Item = Result<Member, RowError>> + Send>, Error> {
    let mut lines = Lines { inner: BufReader::new(reader), line: 0 };
    let mut buffer = Vec::new();
    let kind = match format {
        Format::Jsonl => Kind::Jsonl,
        Format::Csv => {
            let header_error = |reason: String| Error::Header { path: name.to_string(), reason };
            let header = match lines.next_line(&mut buffer) {
                None => return Err(header_error("empty file: expected a header row".into())),
                Some(Err(source)) => return Err(Error::Io { path: name.to_string(), source }),
                Some(Ok(Line::TooLong(_))) => {
                    return Err(header_error("header is too long".into()));
                }
                Some(Ok(Line::Text)) => std::mem::take(&mut buffer),
            };
            let text = String::from_utf8(header).map_err(|error| {
                let reason = not_utf8(error.as_bytes(), error.utf8_error());
                header_error(format!("header is {reason}"))
            })?;
            let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
            let fields = split_csv_line(text).map_err(header_error)?;
            Kind::Csv(parse_header(&fields).map_err(header_error)?)
        }
    };
    Ok(Box::new(Rows { name: name.to_string(), lines, buffer, kind, seen: SeenIds::default() }))
}

/// A line as read into the caller's buffer, or only its length when over
/// [`MAX_LINE_BYTES`].
enum Line {
    Text,
    TooLong(usize),
}

/// Splits input into lines without ever holding more than [`MAX_LINE_BYTES`].
struct Lines<R> {
    inner: BufReader<R>,
    line: u64,
}

impl<R: Read> Lines<R> {
    /// Reads the next line into `buffer` (cleared first; reused across lines so
    /// that a row costs no allocation of its own here).
    fn next_line(&mut self, buffer: &mut Vec<u8>) -> Option<std::io::Result<Line>> {
        buffer.clear();
        let mut length = 0usize;
        let mut any = false;
        loop {
            let available = match self.inner.fill_buf() {
                Ok(available) => available,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => return Some(Err(error)),
            };
            if available.is_empty() {
                break;
            }
            any = true;
            let (chunk, done) = match memchr::memchr(b'\n', available) {
                Some(end) => (&available[..end], true),
                None => (available, false),
            };
            length += chunk.len();
            if length <= MAX_LINE_BYTES {
                buffer.extend_from_slice(chunk);
            } else if !buffer.is_empty() {
                *buffer = Vec::new();
            }
            let consumed = chunk.len() + usize::from(done);
            self.inner.consume(consumed);
            if done {
                break;
            }
        }
        if !any {
            return None;
        }
        self.line += 1;
        if length > MAX_LINE_BYTES {
            return Some(Ok(Line::TooLong(length)));
        }
        if buffer.last() == Some(&b'\r') {
            buffer.pop();
        }
        Some(Ok(Line::Text))
    }
}

/// A CSV column.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Column {
    ExternalId,
    Openid,
    Name,
    Phone,
    City,
    Province,
    Lat,
    Lon,
    Ip,
    Lang,
    Tags,
    Attrs,
    OptedOutAt,
    LastInteractionAt,
    Attr(String),
}

const COLUMN_NAMES: &str = "external_id, openid, name, phone, city, province, lat, lon, ip, \
    lang, tags, attrs, opted_out_at, last_interaction_at, attr.<key>";

fn parse_header(fields: &[Cow<'_, str>]) -> Result<Vec<Column>, String> {
    let mut columns = Vec::with_capacity(fields.len());
    for field in fields {
        let name = field.trim();
        let column = match name {
            "external_id" => Column::ExternalId,
            "openid" => Column::Openid,
            "name" => Column::Name,
            "phone" => Column::Phone,
            "city" => Column::City,
            "province" => Column::Province,
            "lat" => Column::Lat,
            "lon" => Column::Lon,
            "ip" => Column::Ip,
            "lang" => Column::Lang,
            "tags" => Column::Tags,
            "attrs" => Column::Attrs,
            "opted_out_at" => Column::OptedOutAt,
            "last_interaction_at" => Column::LastInteractionAt,
            other => match other.strip_prefix("attr.") {
                Some(key) if !key.is_empty() => Column::Attr(key.to_string()),
                _ => {
                    let closest = COLUMN_NAMES
                        .split(", ")
                        .max_by(|a, b| {
                            strsim::jaro_winkler(a, other)
                                .total_cmp(&strsim::jaro_winkler(b, other))
                        })
                        .unwrap_or("external_id");
                    return Err(format!(
                        "unknown column {other:?} (did you mean {closest:?}? expected {COLUMN_NAMES})"
                    ));
                }
            },
        };
        if columns.contains(&column) {
            return Err(format!("column {name:?} appears twice"));
        }
        columns.push(column);
    }
    if !columns.contains(&Column::ExternalId) {
        return Err(format!("no external_id column (columns: {COLUMN_NAMES})"));
    }
    Ok(columns)
}

/// Splits one CSV line (RFC 4180 quoting, no line breaks inside fields). A line
/// without quotes (the common case) is split in place, without copying a field.
fn split_csv_line(line: &str) -> Result<Vec<Cow<'_, str>>, String> {
    if memchr::memchr(b'"', line.as_bytes()).is_none() {
        return Ok(line.split(',').map(Cow::Borrowed).collect());
    }
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let number = fields.len() + 1;
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => {
                        return Err(format!(
                            "broken CSV quoting: field {number} opens a quote that is never \
                             closed (fields may not span lines)"
                        ));
                    }
                    Some('"') => match chars.peek() {
                        Some('"') => {
                            chars.next();
                            field.push('"');
                        }
                        None | Some(',') => break,
                        Some(other) => {
                            return Err(format!(
                                "broken CSV quoting: field {number} has {other:?} after its \
                                 closing quote (write a quote inside a quoted field as \"\")"
                            ));
                        }
                    },
                    Some(c) => field.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if c == '"' {
                    return Err(format!(
                        "broken CSV quoting: field {number} has a quote but does not start with \
                         one (quote the whole field and double inner quotes)"
                    ));
                }
                field.push(c);
                chars.next();
            }
        }
        fields.push(Cow::Owned(field));
        match chars.next() {
            None => return Ok(fields),
            Some(',') => {}
            Some(other) => return Err(format!("unexpected {other:?} after field {number}")),
        }
    }
}

enum Kind {
    Csv(Vec<Column>),
    Jsonl,
}

/// External id → first row, for duplicate detection. It takes every id of the
/// file, so the ids live in one arena string (no allocation per row) and the map
/// is keyed by their hash; an id whose hash another id already holds is kept
/// apart in `collided`.
#[derive(Default)]
struct SeenIds<S = foldhash::fast::RandomState> {
    arena: String,
    /// Hash of the id → (its range in `arena`, first row).
    by_hash: HashMap<u64, (std::ops::Range<usize>, u64), S>,
    collided: HashMap<Box<str>, u64, S>,
}

impl<S: std::hash::BuildHasher> SeenIds<S> {
    /// The first row of `id` if it was seen before; else records it at `row`.
    fn first_row(&mut self, id: &str, row: u64) -> Option<u64> {
        use std::collections::hash_map::Entry;
        match self.by_hash.entry(self.collided.hasher().hash_one(id)) {
            Entry::Vacant(entry) => {
                let start = self.arena.len();
                self.arena.push_str(id);
                entry.insert((start..self.arena.len(), row));
                None
            }
            Entry::Occupied(entry) if self.arena[entry.get().0.clone()] == *id => {
                Some(entry.get().1)
            }
            Entry::Occupied(_) => match self.collided.entry(id.into()) {
                Entry::Occupied(entry) => Some(*entry.get()),
                Entry::Vacant(entry) => {
                    entry.insert(row);
                    None
                }
            },
        }
    }
}

struct Rows<R> {
    name: String,
    lines: Lines<R>,
    /// The current line (reused).
    buffer: Vec<u8>,
    kind: Kind,
    seen: SeenIds,
}

impl<R: Read> Iterator for Rows<R> {
    type Item = Result<Member, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let line = match self.lines.next_line(&mut self.buffer)? {
                Ok(line) => line,
                Err(error) => {
                    // An I/O error ends the stream after reporting it.
                    let row = self.row_number() + 1;
                    self.lines.line = u64::MAX - 1;
                    return Some(Err(self.error(row, format!("read error: {error}"))));
                }
            };
            let row = self.row_number();
            let bytes = match line {
                Line::TooLong(length) => {
                    return Some(Err(self.error(
                        row,
                        format!(
                            "oversize field: the row is {length} bytes; fields are limited to \
                             {} KiB",
                            MAX_FIELD_BYTES / 1024
                        ),
                    )));
                }
                Line::Text => &self.buffer,
            };
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let parsed = match &self.kind {
                Kind::Csv(columns) => std::str::from_utf8(bytes)
                    .map_err(|error| not_utf8(bytes, error))
                    .and_then(|text| csv_member(columns, text)),
                Kind::Jsonl => std::str::from_utf8(bytes)
                    .map_err(|error| not_utf8(bytes, error))
                    .and_then(|_| json_member(bytes)),
            };
            let member = match parsed.and_then(Member::validated) {
                Ok(member) => member,
                Err(reason) => return Some(Err(self.error(row, reason))),
            };
            if let Some(first) = self.seen.first_row(&member.external_id, row) {
                let reason = format!(
                    "duplicate external_id {:?} (first at row {first})",
                    member.external_id
                );
                return Some(Err(self.error(row, reason)));
            }
            return Some(Ok(member));
        }
    }
}

impl<R> Rows<R> {
    /// Data row number of the last line read (the CSV header is not a row).
    fn row_number(&self) -> u64 {
        match self.kind {
            Kind::Csv(_) => self.lines.line.saturating_sub(1),
            Kind::Jsonl => self.lines.line,
        }
    }

    fn error(&self, row: u64, reason: String) -> RowError {
        RowError { file: self.name.clone(), row, reason }
    }
}

fn csv_member(columns: &[Column], line: &str) -> Result<Member, String> {
    let fields = split_csv_line(line)?;
    if fields.len() != columns.len() {
        return Err(format!("expected {} fields, found {}", columns.len(), fields.len()));
    }
    let mut member = Member::default();
    for (column, raw) in columns.iter().zip(fields) {
        let value = raw.trim();
        if value.is_empty() {
            continue;
        }
        let text = || Some(value.to_string());
        match column {
            Column::ExternalId => member.external_id = value.to_string(),
            Column::Openid => member.openid = text(),
            Column::Name => member.name = text(),
            Column::Phone => member.phone = text(),
            Column::City => member.city = text(),
            Column::Province => member.province = text(),
            Column::Lat => member.lat = Some(number("lat", value)?),
            Column::Lon => member.lon = Some(number("lon", value)?),
            Column::Ip => member.ip = text(),
            Column::Lang => member.lang = text(),
            Column::Tags => {
                member.tags = value
                    .split(';')
                    .map(str::trim)
                    .filter(|tag| !tag.is_empty())
                    .map(str::to_string)
                    .collect();
            }
            Column::Attrs => {
                let attrs: BTreeMap<String, String> = serde_json::from_str(value).map_err(|e| {
                    format!(
                        "attrs: expected a JSON object of strings like {{\"tier\":\"gold\"}}: {e}"
                    )
                })?;
                member.attrs.extend(attrs);
            }
            Column::OptedOutAt => member.opted_out_at = Some(instant("opted_out_at", value)?),
            Column::LastInteractionAt => {
                member.last_interaction_at = Some(instant("last_interaction_at", value)?);
            }
            Column::Attr(key) => {
                member.attrs.insert(key.clone(), value.to_string());
            }
        }
    }
    Ok(member)
}

fn number(column: &str, value: &str) -> Result<f64, String> {
    value.parse::<f64>().map_err(|_| format!("bad coordinates: {column} {value:?} is not a number"))
}

fn instant(column: &str, value: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(value).map(|at| at.with_timezone(&Utc)).map_err(|_| {
        format!(
            "{column}: expected an RFC 3339 instant like 2027-09-14T10:00:00+08:00, found {value:?}"
        )
    })
}

fn json_member(line: &[u8]) -> Result<Member, String> {
    let mut deserializer = serde_json::Deserializer::from_slice(line);
    let member: Member = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let field = error.path().to_string();
        let error = error.into_inner();
        match error.classify() {
            serde_json::error::Category::Data if field != "." => {
                format!("field `{field}`: {error}")
            }
            serde_json::error::Category::Data => format!("wrong JSON type or field: {error}"),
            _ => format!("broken JSON: {error}"),
        }
    })?;
    deserializer.end().map_err(|error| format!("broken JSON: {error}"))?;
    Ok(member)
}

impl Member {
    /// The one member rule, for every way in (member files, the admin API, the
    /// daemon's member file): checks and normalizes the record, or says which
    /// field is wrong and what was expected. Whatever it accepts every backend
    /// stores (no NUL character, which PostgreSQL text refuses; instants within
    /// years 1..=9999).
    pub fn validated(self) -> Result<Member, String> {
        validate(self)
    }
}

fn validate(mut member: Member) -> Result<Member, String> {
    let trimmed = member.external_id.trim();
    if trimmed.len() != member.external_id.len() {
        member.external_id = trimmed.to_string();
    }
    if member.external_id.is_empty() {
        return Err("external_id is empty (every member needs the CRM's id)".into());
    }
    let sizes = [
        ("external_id", Some(&member.external_id)),
        ("openid", member.openid.as_ref()),
        ("name", member.name.as_ref()),
        ("phone", member.phone.as_ref()),
        ("city", member.city.as_ref()),
        ("province", member.province.as_ref()),
        ("ip", member.ip.as_ref()),
        ("lang", member.lang.as_ref()),
    ];
    for (field, value) in sizes {
        if let Some(value) = value {
            check_text(field, value)?;
        }
    }
    for tag in &member.tags {
        check_text("tags", tag)?;
    }
    for (key, value) in &member.attrs {
        check_text("attrs (a key)", key)?;
        check_text(&format!("attrs.{key}"), value)?;
    }
    for (field, at) in
        [("opted_out_at", member.opted_out_at), ("last_interaction_at", member.last_interaction_at)]
    {
        if let Some(at) = at
            && !(1..=9999).contains(&at.year())
        {
            return Err(format!(
                "{field}: {at} is outside the years 1 to 9999; expected an RFC 3339 instant \
                 like 2027-09-14T10:00:00+08:00"
            ));
        }
    }
    if let Some(phone) = &member.phone {
        member.phone = Some(normalize_phone(phone)?);
    }
    match (member.lat, member.lon) {
        (None, None) => {}
        (Some(lat), Some(lon)) => {
            if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
                return Err(format!(
                    "bad coordinates: ({lat}, {lon}) is outside lat -90..90, lon -180..180"
                ));
            }
        }
        _ => return Err("bad coordinates: give both lat and lon, or neither".into()),
    }
    Ok(member)
}

fn check_text(field: &str, value: &str) -> Result<(), String> {
    if let Some(at) = value.find('\0') {
        return Err(format!(
            "{field} contains a NUL character (\\0) at byte {at}; text fields cannot hold it"
        ));
    }
    if value.len() > MAX_FIELD_BYTES {
        return Err(format!(
            "oversize field: {field} is {} bytes; fields are limited to {} KiB",
            value.len(),
            MAX_FIELD_BYTES / 1024
        ));
    }
    Ok(())
}

/// Normalizes a phone number to E.164 (`+8613904511234`). Accepts `+86`, `0086`,
/// a bare 11-digit Chinese mobile number, a Chinese landline with its `0` area
/// code, and spaces, dashes, dots and parentheses as separators.
pub fn normalize_phone(raw: &str) -> Result<String, String> {
    let expected = "expected a Chinese mobile number (11 digits starting with 1), a landline \
                    with its area code (0 then 9 to 11 digits), or an international number \
                    with + or 00";
    // The number itself never appears in the message (it ends up in logs).
    let shown = crate::redact::mask_phone(raw);
    let trimmed = raw.trim();
    let mut digits = String::with_capacity(trimmed.len());
    let mut plus = false;
    for c in trimmed.chars() {
        match c {
            '0'..='9' => digits.push(c),
            '+' if digits.is_empty() && !plus => plus = true,
            ' ' | '-' | '.' | '(' | ')' => {}
            other => return Err(format!("bad phone {shown}: unexpected {other:?}; {expected}")),
        }
    }
    // The international number is `prefix` followed by `body` (slices of
    // `digits`), assembled once at the end.
    let (prefix, body) = if plus {
        ("", digits.as_str())
    } else if let Some(rest) = digits.strip_prefix("00") {
        ("", rest)
    } else if digits.len() == 11 && digits.starts_with('1') {
        ("86", digits.as_str())
    } else if let Some(national) = digits.strip_prefix('0') {
        ("86", national)
    } else {
        return Err(format!("bad phone {shown}: {expected}"));
    };
    // `+86 0451 …`: drop the domestic trunk prefix.
    let (prefix, body) = match (prefix, body.strip_prefix("860"), body.strip_prefix('0')) {
        ("", Some(rest), _) | ("86", _, Some(rest)) => ("86", rest),
        _ => (prefix, body),
    };
    let length = prefix.len() + body.len();
    if (prefix.is_empty() && body.starts_with('0')) || !(8..=15).contains(&length) {
        return Err(format!("bad phone {shown}: not a valid international number; {expected}"));
    }
    let national = if prefix.is_empty() { body.strip_prefix("86") } else { Some(body) };
    if let Some(national) = national {
        // Mobiles are 1[3-9] and 11 digits; landlines an area code (10 for
        // Beijing, otherwise 2x or 3xx-9xx) and 9 to 11 digits in all.
        let valid = match national.as_bytes() {
            [b'1', b'3'..=b'9', ..] => national.len() == 11,
            [b'1', b'0', ..] => national.len() == 10,
            [b'1', ..] => false,
            _ => (9..=11).contains(&national.len()),
        };
        if !valid {
            return Err(format!("bad phone {shown}: not a valid Chinese number; {expected}"));
        }
    }
    let mut e164 = String::with_capacity(1 + length);
    e164.push('+');
    e164.push_str(prefix);
    e164.push_str(body);
    Ok(e164)
}

/// Resolves a member's hints with the bundled place knowledge; the reason on failure.
pub fn resolve_with_geo(geo: &Geo, member: &Member) -> Result<Place, String> {
    let hints = crate::geo::LocationHints {
        city: member.city.as_deref(),
        province: member.province.as_deref(),
        coordinates: member.lat.zip(member.lon),
        phone: member.phone.as_deref(),
        ip: member.ip.as_deref(),
    };
    geo.resolve(&hints).map_err(|error| error.to_string())
}

/// Turns a member into a place, or says why not.
pub type Resolver = Arc<dyn Fn(&Member) -> Result<Place, String> + Send + Sync>;

/// The resolver backed by the bundled place knowledge, and its data version.
pub fn geo_resolver(geo: &'static Geo) -> (Resolver, String) {
    (Arc::new(move |member: &Member| resolve_with_geo(geo, member)), geo.data_version().to_string())
}

/// Counts from an import.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Rows read (good and bad).
    pub read: u64,
    /// New members.
    pub inserted: u64,
    /// Existing members that changed.
    pub updated: u64,
    /// Existing members, identical.
    pub unchanged: u64,
    /// Bad rows (reported, not imported).
    pub rejected: u64,
}

/// Default rows per import batch on SQLite.
pub const DEFAULT_BATCH: usize = 2000;

/// Default rows per import batch on PostgreSQL: each batch is a transaction with a
/// COPY and one upsert statement, whose fixed cost 10 000 rows amortize (1.7× the
/// rate of 2 000-row batches in `benches/import.rs`); on SQLite larger batches were
/// slower (they hold the write lock longer).
pub const DEFAULT_BATCH_POSTGRES: usize = 10_000;

/// The default batch for `store`'s backend.
pub fn default_batch(store: &Store) -> usize {
    match store.kind() {
        crate::store::BackendKind::Sqlite => DEFAULT_BATCH,
        crate::store::BackendKind::Postgres => DEFAULT_BATCH_POSTGRES,
    }
}

/// What one batch from the reading thread carries.
struct Batch {
    rows: Vec<(Member, Resolution)>,
    errors: Vec<RowError>,
}

/// Imports a stream of rows: reads and resolves on a thread of its own while
/// the previous batch is written, upserts by external id in batches of `batch`
/// rows, hands each bad row to `on_error` (in file order), and calls
/// `on_progress` after every batch. Re-importing the same rows changes nothing.
/// The first import of more than one batch into an empty table is a bulk load
/// ([`Store::begin_bulk_load`]; on PostgreSQL all or nothing, with members
/// appearing when it ends).
pub async fn import(
    store: &Store,
    rows: Box<dyn Iterator<Item = Result<Member, RowError>> + Send>,
    resolver: Resolver,
    data_version: &str,
    batch: usize,
    on_error: &mut (dyn FnMut(&RowError) + Send),
    on_progress: &mut (dyn FnMut(&ImportSummary) + Send),
) -> Result<ImportSummary, Error> {
    let batch = batch.max(1);
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Batch>(2);
    let version = data_version.to_string();
    let reader = std::thread::spawn(move || {
        let mut current = Batch { rows: Vec::with_capacity(batch), errors: Vec::new() };
        for row in rows {
            match row {
                Ok(member) => {
                    let resolution = match resolver(&member) {
                        Ok(place) => Resolution {
                            place: Some(place),
                            unresolved_reason: None,
                            data_version: Some(version.clone()),
                        },
                        Err(reason) => Resolution {
                            place: None,
                            unresolved_reason: Some(reason),
                            data_version: Some(version.clone()),
                        },
                    };
                    current.rows.push((member, resolution));
                }
                Err(error) => current.errors.push(error),
            }
            if current.rows.len() + current.errors.len() >= batch {
                let full = std::mem::replace(
                    &mut current,
                    Batch { rows: Vec::with_capacity(batch), errors: Vec::new() },
                );
                if sender.blocking_send(full).is_err() {
                    return;
                }
            }
        }
        let _ = sender.blocking_send(current);
    });
    let mut summary = ImportSummary::default();
    // An import of more than one batch into an empty table is a bulk load.
    let mut bulk = None;
    let mut first = true;
    while let Some(Batch { rows, errors }) = receiver.recv().await {
        summary.read += (rows.len() + errors.len()) as u64;
        summary.rejected += errors.len() as u64;
        for error in &errors {
            on_error(error);
        }
        if std::mem::take(&mut first) && rows.len() + errors.len() >= batch {
            bulk = store.begin_bulk_load().await?;
        }
        let written = match bulk.as_mut() {
            Some(load) => load.write(rows).await?,
            None => Written::of(&store.upsert_resolved(&rows).await?),
        };
        summary.inserted += written.inserted;
        summary.updated += written.updated;
        summary.unchanged += written.unchanged;
        on_progress(&summary);
    }
    drop(receiver);
    if reader.join().is_err() {
        return Err(Error::Write("the member reader thread panicked".into()));
    }
    if let Some(load) = bulk {
        // A repeated external id replaced its earlier row: an update.
        let replaced = load.finish().await?;
        summary.inserted -= replaced;
        summary.updated += replaced;
    }
    Ok(summary)
}

/// CSV columns written by [`export`] (and read back by [`read_file`]).
const EXPORT_COLUMNS: [&str; 14] = [
    "external_id",
    "openid",
    "name",
    "phone",
    "city",
    "province",
    "lat",
    "lon",
    "ip",
    "lang",
    "tags",
    "attrs",
    "opted_out_at",
    "last_interaction_at",
];

/// Writes every member, in id order, as CSV or JSONL; returns how many.
pub async fn export(store: &Store, format: Format, out: &mut dyn Write) -> Result<u64, Error> {
    let write_error = |error: &dyn std::fmt::Display| Error::Write(error.to_string());
    let mut after = 0;
    let mut count = 0;
    match format {
        Format::Csv => {
            let mut writer = csv::Writer::from_writer(&mut *out);
            writer.write_record(EXPORT_COLUMNS).map_err(|e| write_error(&e))?;
            while let Some(page) = next_page(store, &mut after).await? {
                for stored in &page {
                    writer
                        .write_record(csv_record(&stored.member)?)
                        .map_err(|e| write_error(&e))?;
                    count += 1;
                }
            }
            writer.flush().map_err(|e| write_error(&e))?;
        }
        Format::Jsonl => {
            while let Some(page) = next_page(store, &mut after).await? {
                for stored in &page {
                    serde_json::to_writer(&mut *out, &stored.member)
                        .map_err(|e| write_error(&e))?;
                    out.write_all(b"\n").map_err(|e| write_error(&e))?;
                    count += 1;
                }
            }
        }
    }
    out.flush().map_err(|e| write_error(&e))?;
    Ok(count)
}

async fn next_page(
    store: &Store,
    after: &mut i64,
) -> Result<Option<Vec<crate::store::StoredMember>>, Error> {
    let page = store.members_page(*after, 5000).await?;
    Ok(page.last().map(|last| last.id).map(|last| {
        *after = last;
        page
    }))
}

fn csv_record(member: &Member) -> Result<[String; 14], Error> {
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    let float = |value: Option<f64>| value.map(|v| v.to_string()).unwrap_or_default();
    let time = |value: Option<DateTime<Utc>>| value.map(|v| v.to_rfc3339()).unwrap_or_default();
    let attrs = if member.attrs.is_empty() {
        String::new()
    } else {
        serde_json::to_string(&member.attrs).map_err(|e| Error::Write(e.to_string()))?
    };
    Ok([
        member.external_id.clone(),
        text(&member.openid),
        text(&member.name),
        text(&member.phone),
        text(&member.city),
        text(&member.province),
        float(member.lat),
        float(member.lon),
        text(&member.ip),
        text(&member.lang),
        member.tags.join(";"),
        attrs,
        time(member.opted_out_at),
        time(member.last_interaction_at),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_normalize_to_e164() {
        for (raw, expected) in [
            ("13904511234", "+8613904511234"),
            ("+86 139-0451-1234", "+8613904511234"),
            ("0086 139 0451 1234", "+8613904511234"),
            ("(+86) 139.0451.1234", "+8613904511234"),
            ("+86 0451 8765 4321", "+8645187654321"),
            ("0451-87654321", "+8645187654321"),
            ("010-6552 9988", "+861065529988"),
            ("+44 20 7946 0958", "+442079460958"),
            ("+852 9123 4567", "+85291234567"),
            ("0086 0451 8765 4321", "+8645187654321"),
            (" 139 0451 1234 ", "+8613904511234"),
        ] {
            assert_eq!(normalize_phone(raw).as_deref(), Ok(expected), "{raw}");
        }
    }

    #[test]
    fn bad_phones_are_rejected_with_a_reason() {
        for raw in [
            "12345",
            "1390451123",
            "139045112345",
            "+86 129 0451 1234",
            "call me",
            "",
            "+",
            "00",
            "+0451 8765 4321",
            "+86 0451 87",
        ] {
            let error = normalize_phone(raw).expect_err(raw);
            assert!(error.starts_with("bad phone"), "{raw}: {error}");
        }
    }

    #[test]
    fn csv_lines_split_strictly() {
        assert_eq!(
            split_csv_line(r#"a,"b, c","d ""e""",,"#).unwrap(),
            vec!["a", "b, c", "d \"e\"", "", ""]
        );
        assert!(split_csv_line(r#"a,"b"#).unwrap_err().contains("never closed"));
        assert!(split_csv_line(r#"a,"b"x,c"#).unwrap_err().contains("after its closing quote"));
        assert!(split_csv_line(r#"a,b"c"#).unwrap_err().contains("does not start with"));
    }

    #[test]
    fn seen_ids_tell_apart_ids_whose_hashes_collide() {
        // Every id hashes alike: all but the first go through `collided`.
        #[derive(Default)]
        struct Constant;
        impl std::hash::Hasher for Constant {
            fn finish(&self) -> u64 {
                7
            }
            fn write(&mut self, _: &[u8]) {}
        }
        let mut seen = SeenIds::<std::hash::BuildHasherDefault<Constant>>::default();
        assert_eq!(seen.first_row("a", 1), None);
        assert_eq!(seen.first_row("b", 2), None);
        assert_eq!(seen.first_row("c", 3), None);
        assert_eq!(seen.first_row("a", 4), Some(1));
        assert_eq!(seen.first_row("c", 5), Some(3));
        assert_eq!(seen.first_row("b", 6), Some(2));
        // And with the real hasher.
        let mut seen = SeenIds::<foldhash::fast::RandomState>::default();
        assert_eq!(seen.first_row("crm-1", 1), None);
        assert_eq!(seen.first_row("crm-2", 2), None);
        assert_eq!(seen.first_row("crm-1", 3), Some(1));
    }

    #[test]
    fn unquoted_lines_split_in_place_like_quoted_ones() {
        let fast = split_csv_line("a, b ,,c,").unwrap();
        assert!(fast.iter().all(|field| matches!(field, Cow::Borrowed(_))));
        assert_eq!(fast, vec!["a", " b ", "", "c", ""]);
        // The same fields through the quoting parser (one quoted field).
        let slow = split_csv_line(r#""a", b ,,c,"#).unwrap();
        assert!(slow.iter().all(|field| matches!(field, Cow::Owned(_))));
        assert_eq!(slow, fast);
        assert_eq!(split_csv_line("").unwrap(), vec![""]);
    }
}
