//! The usage record and its rules (man 7 hero_usage, USAGE RECORDS). Knows no files
//! and no network: input comes in as loosely typed fields, out goes a
//! validated [`UsageRecord`] or a list of [`FieldError`]s naming each field.

use chrono::{DateTime, NaiveDateTime, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// The OTOML time form, always UTC.
pub const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";
/// Largest accepted `amount_cents` (10^12).
pub const MAX_AMOUNT_CENTS: u64 = 1_000_000_000_000;
/// How far in the future `occurred_at` may lie (clock skew between callers).
pub const MAX_FUTURE_SECS: i64 = 300;
/// The earliest accepted `occurred_at` (UTC): earlier instants are typos, and
/// years outside 4 digits would not read back from the spool or OTOML.
pub const EARLIEST_OCCURRED_AT: &str = "2000-01-01 00:00:00";
/// The record's fields: the one list of them, in canonical (alphabetical)
/// order, which every reader, writer and check goes by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    AmountCents,
    Description,
    IdempotencyKey,
    NodeId,
    OccurredAt,
    ResourceKind,
    UserSid,
}

impl Field {
    /// Every field, in canonical order.
    pub const ALL: [Field; 7] = [
        Field::AmountCents,
        Field::Description,
        Field::IdempotencyKey,
        Field::NodeId,
        Field::OccurredAt,
        Field::ResourceKind,
        Field::UserSid,
    ];

    /// Its name in every format (TOML key, JSON key, OTOML key).
    pub const fn name(self) -> &'static str {
        match self {
            Field::AmountCents => "amount_cents",
            Field::Description => "description",
            Field::IdempotencyKey => "idempotency_key",
            Field::NodeId => "node_id",
            Field::OccurredAt => "occurred_at",
            Field::ResourceKind => "resource_kind",
            Field::UserSid => "user_sid",
        }
    }

    pub fn from_name(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The rule of a value of this field that holds for ever (the time
    /// range depends on "now", so `occurred_at` is checked at validation).
    fn check(self, value: Value<'_>) -> Result<(), String> {
        match (self, value) {
            (Field::AmountCents, Value::Int(a)) => check_amount(a),
            (Field::Description, Value::Str(d)) => check_description(d),
            (Field::IdempotencyKey, Value::Str(k)) => check_idempotency_key(k),
            (Field::NodeId, Value::Str(n)) => check_node_name(n),
            (Field::ResourceKind, Value::Str(k)) => check_resource_kind(k),
            (Field::UserSid, Value::Str(s)) => check_user_sid(s),
            _ => Ok(()),
        }
    }
}

/// The record's field names, in canonical (alphabetical) order.
pub const FIELDS: [&str; 7] = [
    Field::ALL[0].name(),
    Field::ALL[1].name(),
    Field::ALL[2].name(),
    Field::ALL[3].name(),
    Field::ALL[4].name(),
    Field::ALL[5].name(),
    Field::ALL[6].name(),
];

/// One field's value of a record, to compare, check and render fields one
/// by one from the one list [`Field::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Str(&'a str),
    Int(u64),
    Time(UtcSecond),
}

/// A UTC instant to the second, rendered as `YYYY-MM-DD HH:MM:SS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UtcSecond(pub NaiveDateTime);

impl UtcSecond {
    pub fn from_utc(t: DateTime<Utc>) -> Self {
        UtcSecond(t.naive_utc().with_nanosecond(0).expect("0 ns is valid"))
    }

    /// Parse the accepted input forms: exactly `YYYY-MM-DD HH:MM:SS` (UTC),
    /// or RFC 3339 with an offset (converted to UTC; fractions of a second
    /// are dropped). A time without an offset in any other shape is refused:
    /// it may be local time, and would be billed in the wrong hour.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(t) = UtcSecond::parse_exact(s) {
            return Ok(t);
        }
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Ok(UtcSecond::from_utc(t.with_timezone(&Utc)));
        }
        Err(
            "must be `YYYY-MM-DD HH:MM:SS` in UTC or RFC 3339 with an offset \
             (e.g. 2026-11-26T16:04:05+01:00)"
                .to_string(),
        )
    }

    /// Exactly `YYYY-MM-DD HH:MM:SS`, the spool's and OTOML's own form. A
    /// leap second (`:60`) is folded into `:59`, as RFC 3339 input is, so
    /// that a record never sits in an hour of its own making.
    pub fn parse_exact(s: &str) -> Option<Self> {
        let exact = s.len() == 19
            && s.bytes().enumerate().all(|(i, b)| match i {
                4 | 7 => b == b'-',
                10 => b == b' ',
                13 | 16 => b == b':',
                _ => b.is_ascii_digit(),
            });
        let t = NaiveDateTime::parse_from_str(s, TIME_FORMAT).ok()?;
        exact.then(|| UtcSecond(t.with_nanosecond(0).expect("0 ns is valid")))
    }

    pub fn hour_bucket(self) -> HourBucket {
        HourBucket(UtcSecond(
            self.0
                .with_minute(0)
                .and_then(|t| t.with_second(0))
                .expect("minute and second 0 are valid"),
        ))
    }
}

impl fmt::Display for UtcSecond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format(TIME_FORMAT))
    }
}

impl Serialize for UtcSecond {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for UtcSecond {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        UtcSecond::parse_exact(&s)
            .ok_or_else(|| serde::de::Error::custom("occurred_at must be `YYYY-MM-DD HH:MM:SS`"))
    }
}

/// The UTC hour a record belongs to; names its batch file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HourBucket(pub UtcSecond);

impl fmt::Display for HourBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.0.format("%Y-%m-%d-%H"))
    }
}

/// One validated usage record. Field order is alphabetical, so serializing it
/// gives canonical key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageRecord {
    pub amount_cents: u64,
    pub description: String,
    pub idempotency_key: String,
    pub node_id: String,
    pub occurred_at: UtcSecond,
    pub resource_kind: String,
    pub user_sid: String,
}

impl UsageRecord {
    pub fn hour_bucket(&self) -> HourBucket {
        self.occurred_at.hour_bucket()
    }

    /// The value of one field.
    pub fn value(&self, field: Field) -> Value<'_> {
        match field {
            Field::AmountCents => Value::Int(self.amount_cents),
            Field::Description => Value::Str(&self.description),
            Field::IdempotencyKey => Value::Str(&self.idempotency_key),
            Field::NodeId => Value::Str(&self.node_id),
            Field::OccurredAt => Value::Time(self.occurred_at),
            Field::ResourceKind => Value::Str(&self.resource_kind),
            Field::UserSid => Value::Str(&self.user_sid),
        }
    }

    /// The names of the fields that differ from `other`; `occurred_at` is left
    /// out when `ignore_occurred_at` (a retry whose time defaulted to "now").
    pub fn differing_fields(
        &self,
        other: &UsageRecord,
        ignore_occurred_at: bool,
    ) -> Vec<&'static str> {
        Field::ALL
            .into_iter()
            .filter(|&f| !(ignore_occurred_at && f == Field::OccurredAt))
            .filter(|&f| self.value(f) != other.value(f))
            .map(Field::name)
            .collect()
    }

    /// Check every rule again (for records read back from disk or the forge).
    pub fn check(&self) -> Result<(), Vec<FieldError>> {
        let errs: Vec<FieldError> = Field::ALL
            .into_iter()
            .filter_map(|f| {
                f.check(self.value(f)).err().map(|problem| FieldError {
                    field: f.name(),
                    problem,
                })
            })
            .collect();
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }
}

/// One broken rule: which field, and what is wrong with it and how to fix it.
/// Never contains the value itself (it may be something a caller keeps secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub problem: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

/// Join field errors into one line: `a: ...; b: ...`.
pub fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A field value as it arrived, before its type is checked.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    Str(String),
    Int(i128),
    /// Anything else; the string names its type for the message.
    Other(&'static str),
}

/// A record as it arrived: any field may be missing or of the wrong type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordInput {
    pub idempotency_key: Option<RawValue>,
    pub node_id: Option<RawValue>,
    pub user_sid: Option<RawValue>,
    pub amount_cents: Option<RawValue>,
    pub resource_kind: Option<RawValue>,
    pub description: Option<RawValue>,
    pub occurred_at: Option<RawValue>,
    /// Keys that are not record fields (reported, never accepted).
    pub unknown: Vec<String>,
}

/// What validation fills in when a field is missing.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// The node name (`node_id` default).
    pub node: String,
    /// "Now": `occurred_at` default and the future limit.
    pub now: DateTime<Utc>,
    /// `occurred_at` for an input without one, when it is not "now" (a drop
    /// file's modification time).
    pub occurred_at: Option<DateTime<Utc>>,
}

/// A record that passed validation, and whether its time was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    pub record: UsageRecord,
    /// False when `occurred_at` defaulted: duplicates are then compared without it.
    pub occurred_at_given: bool,
}

impl RecordInput {
    /// Set a field by name; unknown names are remembered as such.
    pub fn set(&mut self, name: &str, value: RawValue) {
        match Field::from_name(name) {
            Some(f) => *self.slot(f) = Some(value),
            None => self.unknown.push(name.to_string()),
        }
    }

    fn slot(&mut self, field: Field) -> &mut Option<RawValue> {
        match field {
            Field::AmountCents => &mut self.amount_cents,
            Field::Description => &mut self.description,
            Field::IdempotencyKey => &mut self.idempotency_key,
            Field::NodeId => &mut self.node_id,
            Field::OccurredAt => &mut self.occurred_at,
            Field::ResourceKind => &mut self.resource_kind,
            Field::UserSid => &mut self.user_sid,
        }
    }

    fn get(&self, field: Field) -> &Option<RawValue> {
        match field {
            Field::AmountCents => &self.amount_cents,
            Field::Description => &self.description,
            Field::IdempotencyKey => &self.idempotency_key,
            Field::NodeId => &self.node_id,
            Field::OccurredAt => &self.occurred_at,
            Field::ResourceKind => &self.resource_kind,
            Field::UserSid => &self.user_sid,
        }
    }

    /// From the text of one JSON object (a `--stdin` line or a shim body).
    /// A field given twice is refused: which copy a billing record meant
    /// cannot be guessed.
    pub fn from_json_text(text: &str) -> Result<Self, String> {
        let UniqueObject(fields) = serde_json::from_str(text).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => e.to_string(),
            _ => format!("not valid JSON: {e}"),
        })?;
        let mut input = RecordInput::default();
        for (k, v) in fields {
            let raw = match v {
                serde_json::Value::String(s) => RawValue::Str(s),
                serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                    (Some(i), _, _) => RawValue::Int(i128::from(i)),
                    (_, Some(u), _) => RawValue::Int(i128::from(u)),
                    // Whole but beyond 64 bits: out of range, not fractional.
                    (_, _, Some(f)) if f.fract() == 0.0 && f.abs() >= 9.2e18 => {
                        RawValue::Int(if f < 0.0 { i128::MIN } else { i128::MAX })
                    }
                    _ => RawValue::Other("a number with a fraction or an exponent"),
                },
                serde_json::Value::Null => continue,
                serde_json::Value::Bool(_) => RawValue::Other("a boolean"),
                serde_json::Value::Array(_) => RawValue::Other("an array"),
                serde_json::Value::Object(_) => RawValue::Other("an object"),
            };
            input.set(&k, raw);
        }
        Ok(input)
    }

    /// From a TOML document (a spool record file).
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| format!("not valid TOML: {}", e.message()))?;
        let mut input = RecordInput::default();
        for (k, v) in table {
            let raw = match v {
                toml::Value::String(s) => RawValue::Str(s),
                toml::Value::Integer(i) => RawValue::Int(i as i128),
                // Without an offset it may be local time: a string in
                // quotes says UTC (a bare `2026-11-26 16:04:05` is TOML's
                // local date-time, not the OTOML time form).
                toml::Value::Datetime(d) if d.offset.is_none() => RawValue::Other(
                    "a TOML date-time without an offset (maybe local time); \
                     write it in quotes, \"YYYY-MM-DD HH:MM:SS\" in UTC",
                ),
                toml::Value::Datetime(d) => RawValue::Str(d.to_string()),
                toml::Value::Float(_) => RawValue::Other("a float"),
                toml::Value::Boolean(_) => RawValue::Other("a boolean"),
                toml::Value::Array(_) => RawValue::Other("an array"),
                toml::Value::Table(_) => RawValue::Other("a table"),
            };
            input.set(&k, raw);
        }
        Ok(input)
    }

    /// Check every rule; all broken rules are reported at once.
    pub fn validate(&self, defaults: &Defaults) -> Result<Validated, Vec<FieldError>> {
        let mut errs: Vec<FieldError> = self
            .unknown
            .iter()
            .map(|name| FieldError {
                field: "record",
                problem: format!(
                    "unknown field `{}`; the fields are {}",
                    printable(name),
                    FIELDS.join(", ")
                ),
            })
            .collect();
        let text = |f: Field, default: Option<&str>| {
            let v = match (self.get(f), default) {
                (None, Some(d)) => d.to_string(),
                (v, _) => required_str(v)?,
            };
            f.check(Value::Str(&v)).map(|()| v)
        };
        let e = &mut errs;
        let key = keep(e, Field::IdempotencyKey, text(Field::IdempotencyKey, None));
        let node = text(Field::NodeId, Some(&defaults.node)).and_then(|n| same_node(n, defaults));
        let node = keep(e, Field::NodeId, node);
        let sid = keep(e, Field::UserSid, text(Field::UserSid, None));
        let amount = required_amount(&self.amount_cents)
            .and_then(|a| Field::AmountCents.check(Value::Int(a)).map(|()| a));
        let amount = keep(e, Field::AmountCents, amount);
        let kind = keep(e, Field::ResourceKind, text(Field::ResourceKind, None));
        let description = keep(e, Field::Description, text(Field::Description, Some("")));
        let occurred = self.occurred_at_for(defaults);
        let occurred = keep(e, Field::OccurredAt, occurred);

        match (key, node, sid, amount, kind, description, occurred) {
            (Some(key), Some(node), Some(sid), Some(amount), Some(kind), Some(desc), Some(at))
                if errs.is_empty() =>
            {
                Ok(Validated {
                    record: UsageRecord {
                        amount_cents: amount,
                        description: desc,
                        idempotency_key: key,
                        node_id: node,
                        occurred_at: at,
                        resource_kind: kind,
                        user_sid: sid,
                    },
                    occurred_at_given: self.occurred_at.is_some(),
                })
            }
            _ => Err(errs),
        }
    }
}

impl RecordInput {
    /// `occurred_at` as given, or the default (a drop's file time, else
    /// now), within the accepted range. A default from a drop's file time
    /// is named as such, or the reason would name a field the file lacks.
    fn occurred_at_for(&self, defaults: &Defaults) -> Result<UtcSecond, String> {
        let occurred = match &self.occurred_at {
            None => Ok(UtcSecond::from_utc(
                defaults.occurred_at.unwrap_or(defaults.now),
            )),
            v => required_str(v).and_then(|s| UtcSecond::parse(&s)),
        };
        let occurred = occurred.and_then(|t| check_occurred_at(t, defaults.now));
        match (&self.occurred_at, defaults.occurred_at) {
            (None, Some(mtime)) => occurred.map_err(|problem| {
                format!(
                    "{problem}; the drop gives no occurred_at, so its file's modification \
                     time ({} UTC) was used: give occurred_at in the drop",
                    UtcSecond::from_utc(mtime)
                )
            }),
            _ => occurred,
        }
    }
}

/// A record is pushed into its node's folder (`nodes/<node>/`), where the
/// audit holds a `node_id` naming another node a violation: so a record of
/// another node is refused here, not acknowledged and then reported.
fn same_node(n: String, defaults: &Defaults) -> Result<String, String> {
    if n == defaults.node {
        return Ok(n);
    }
    Err(format!(
        "names another node than this one (`{}`); its records are pushed under \
         nodes/{}/, so leave node_id out (it defaults to the node name) or give that name",
        defaults.node, defaults.node
    ))
}

/// A field's value when it is good; otherwise its problem goes to `errs`.
fn keep<T>(errs: &mut Vec<FieldError>, field: Field, r: Result<T, String>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(problem) => {
            errs.push(FieldError {
                field: field.name(),
                problem,
            });
            None
        }
    }
}

/// `occurred_at` (already in UTC) must lie in [`EARLIEST_OCCURRED_AT`,
/// `now` + [`MAX_FUTURE_SECS`]]: only such a time reads back unchanged
/// everywhere and is a plausible usage time.
pub fn check_occurred_at(t: UtcSecond, now: DateTime<Utc>) -> Result<UtcSecond, String> {
    let earliest = UtcSecond::parse_exact(EARLIEST_OCCURRED_AT).expect("a valid constant");
    let limit = now + chrono::Duration::seconds(MAX_FUTURE_SECS);
    if t < earliest {
        Err(format!(
            "lies before {EARLIEST_OCCURRED_AT} UTC (after conversion to UTC); \
             give the time the usage happened"
        ))
    } else if t.0 > limit.naive_utc() {
        Err(format!(
            "lies more than {} minutes in the future (now is {} UTC); check the caller's clock",
            MAX_FUTURE_SECS / 60,
            UtcSecond::from_utc(now)
        ))
    } else {
        Ok(t)
    }
}

fn required_str(v: &Option<RawValue>) -> Result<String, String> {
    match v {
        None => Err("is required but missing".to_string()),
        Some(RawValue::Str(s)) => Ok(s.clone()),
        Some(RawValue::Int(_)) => {
            Err("must be a string, not a number; put it in quotes".to_string())
        }
        Some(RawValue::Other(t)) => Err(format!("must be a string, not {t}")),
    }
}

fn required_amount(v: &Option<RawValue>) -> Result<u64, String> {
    let range = format!("must be a whole number of cents from 0 to {MAX_AMOUNT_CENTS}");
    match v {
        None => Err("is required but missing".to_string()),
        Some(RawValue::Int(i)) if (0..=MAX_AMOUNT_CENTS as i128).contains(i) => Ok(*i as u64),
        Some(RawValue::Int(i)) if *i < 0 => Err(format!("{range}; it is negative")),
        Some(RawValue::Int(_)) => Err(format!("{range}; it is larger")),
        // Flags become numbers before this (see `amount_from_flag`).
        Some(RawValue::Str(_)) => Err(format!(
            "{range}, not a string; send the number without quotes"
        )),
        Some(RawValue::Other(t)) => Err(format!("{range}, not {t}")),
    }
}

/// The `--amount-cents` flag's text as a value: digits only (no sign, no
/// spaces), so that what a script passes is exactly the number billed.
pub fn amount_from_flag(text: &str) -> RawValue {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return RawValue::Other("text other than the digits 0-9");
    }
    // Longer than any i128 is out of range all the same.
    RawValue::Int(text.parse::<i128>().unwrap_or(i128::MAX))
}

/// A JSON object's fields in order; a name given twice is an error
/// (`serde_json::Value` would keep the last silently).
struct UniqueObject(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for UniqueObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = UniqueObject;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object with the record's fields")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<UniqueObject, A::Error> {
                let mut fields: Vec<(String, serde_json::Value)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                    if fields.iter().any(|(seen, _)| *seen == k) {
                        return Err(serde::de::Error::custom(format!(
                            "field `{}` is given twice; give each field once",
                            printable(&k)
                        )));
                    }
                    fields.push((k, v));
                }
                Ok(UniqueObject(fields))
            }
        }
        d.deserialize_map(Fields)
    }
}

/// Describe a character without echoing the value around it.
fn char_problem(s: &str, ok: impl Fn(usize, char) -> bool) -> Option<String> {
    s.chars()
        .enumerate()
        .find(|&(i, c)| !ok(i, c))
        .map(|(i, c)| {
            let what = if c.is_ascii_graphic() {
                format!("`{c}`")
            } else {
                format!("U+{:04X}", c as u32)
            };
            format!("character {} is {what}", i + 1)
        })
}

pub fn check_idempotency_key(k: &str) -> Result<(), String> {
    let rule = "must be 1 to 255 visible ASCII characters (0x21 to 0x7E, no spaces)";
    if k.is_empty() {
        return Err(format!("{rule}; it is empty"));
    }
    if k.len() > 255 {
        return Err(format!("{rule}; it is {} bytes long", k.len()));
    }
    match char_problem(k, |_, c| ('\x21'..='\x7e').contains(&c)) {
        Some(p) => Err(format!("{rule}; {p}")),
        None => Ok(()),
    }
}

/// The rule for `node_id` and the node name (it becomes a path segment).
pub fn check_node_name(n: &str) -> Result<(), String> {
    let rule = "must be 1 to 64 of A-Z a-z 0-9 . _ - and not start with `.`";
    if n.is_empty() {
        return Err(format!("{rule}; it is empty"));
    }
    if n.chars().count() > 64 {
        return Err(format!(
            "{rule}; it is {} characters long",
            n.chars().count()
        ));
    }
    match char_problem(n, |i, c| {
        (c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.') && !(i == 0 && c == '.')
    }) {
        Some(p) => Err(format!("{rule}; {p}")),
        None => Ok(()),
    }
}

pub fn check_user_sid(s: &str) -> Result<(), String> {
    let rule = "must be a Hero SmartID: 4 to 6 of 0-9 a-z";
    let n = s.chars().count();
    if !(4..=6).contains(&n) {
        return Err(format!("{rule}; it is {n} characters long"));
    }
    match char_problem(s, |_, c| c.is_ascii_digit() || c.is_ascii_lowercase()) {
        Some(p) => Err(format!("{rule}; {p}")),
        None => Ok(()),
    }
}

pub fn check_amount(a: u64) -> Result<(), String> {
    if a > MAX_AMOUNT_CENTS {
        return Err(format!(
            "must be a whole number of cents from 0 to {MAX_AMOUNT_CENTS}; it is larger"
        ));
    }
    Ok(())
}

pub fn check_resource_kind(k: &str) -> Result<(), String> {
    let rule = "must be 1 to 64 characters matching ^[a-z][a-z0-9_.-]*$";
    let n = k.chars().count();
    if !(1..=64).contains(&n) {
        return Err(format!("{rule}; it is {n} characters long"));
    }
    match char_problem(k, |i, c| {
        c.is_ascii_lowercase() || (i > 0 && (c.is_ascii_digit() || "_.-".contains(c)))
    }) {
        Some(p) => Err(format!("{rule}; {p}")),
        None => Ok(()),
    }
}

pub fn check_description(d: &str) -> Result<(), String> {
    let rule = "must be at most 1024 characters with no control characters (one line)";
    let n = d.chars().count();
    if n > 1024 {
        return Err(format!("{rule}; it is {n} characters long"));
    }
    // U+2028/U+2029 are no control characters, but they end a line.
    match char_problem(d, |_, c| {
        !c.is_control() && c != '\u{2028}' && c != '\u{2029}'
    }) {
        Some(p) => Err(format!("{rule}; {p}")),
        None => Ok(()),
    }
}

/// A name for a message: printable ASCII kept, the rest escaped, cut short.
fn printable(s: &str) -> String {
    s.chars().take(64).flat_map(char::escape_default).collect()
}

/// A valid record for unit tests elsewhere in the crate.
#[cfg(test)]
pub(crate) fn sample_record(key: &str, amount_cents: u64) -> UsageRecord {
    UsageRecord {
        amount_cents,
        description: String::new(),
        idempotency_key: key.into(),
        node_id: "n1".into(),
        occurred_at: UtcSecond::parse("2026-11-26 16:00:00").expect("a valid time"),
        resource_kind: "cpu".into(),
        user_sid: "0a1b".into(),
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use chrono::TimeZone;

    fn defaults() -> Defaults {
        Defaults {
            node: "node-7".into(),
            now: Utc.with_ymd_and_hms(2026, 11, 26, 16, 30, 0).unwrap(),
            occurred_at: None,
        }
    }

    fn input(pairs: &[(&str, RawValue)]) -> RecordInput {
        let mut i = RecordInput::default();
        for (k, v) in pairs {
            i.set(k, v.clone());
        }
        i
    }

    fn good() -> RecordInput {
        input(&[
            ("idempotency_key", RawValue::Str("job-42".into())),
            ("user_sid", RawValue::Str("0a1b".into())),
            ("amount_cents", RawValue::Int(250)),
            ("resource_kind", RawValue::Str("cpu_hours".into())),
        ])
    }

    #[test]
    fn defaults_fill_node_time_and_description() {
        let v = good().validate(&defaults()).unwrap();
        assert_eq!(v.record.node_id, "node-7");
        assert_eq!(v.record.description, "");
        assert_eq!(v.record.occurred_at.to_string(), "2026-11-26 16:30:00");
        assert!(!v.occurred_at_given);
        assert_eq!(v.record.hour_bucket().to_string(), "2026-11-26-16");
    }

    #[test]
    fn a_leap_second_folds_into_the_same_hour() {
        for s in ["2026-11-25 22:59:60", "2026-11-25T22:59:60Z"] {
            let t = UtcSecond::parse(s).unwrap();
            assert_eq!(t.to_string(), "2026-11-25 22:59:59", "{s}");
            assert_eq!(
                t.hour_bucket(),
                UtcSecond::parse("2026-11-25 22:10:00")
                    .unwrap()
                    .hour_bucket()
            );
        }
        assert!(check_description("a\u{2028}b").is_err());
    }

    #[test]
    fn a_time_is_exact_or_carries_its_offset() {
        for bad in [
            "2026-11-26T16:04:05",   // no offset: maybe local time
            " 2026-11-26 16:04:05",  // padded
            "2026-11-26  16:04:05",  // two spaces
            "2026-11-26 16:04:05 ",  // trailing space
            "2026-11-26 16:04",      // no seconds
            "2026-11-26 16:04:05.5", // a fraction without an offset
        ] {
            assert!(UtcSecond::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            UtcSecond::parse("2026-11-26T16:04:05Z")
                .unwrap()
                .to_string(),
            "2026-11-26 16:04:05"
        );
    }

    #[test]
    fn a_toml_date_time_counts_only_with_an_offset() {
        let drop = |at: &str| {
            RecordInput::from_toml(&format!(
                "idempotency_key = \"k\"\nuser_sid = \"0a1b\"\namount_cents = 1\n\
                 resource_kind = \"cpu\"\noccurred_at = {at}\n"
            ))
            .unwrap()
            .validate(&defaults())
        };
        let v = drop("2026-11-26T17:04:05+01:00").unwrap();
        assert_eq!(v.record.occurred_at.to_string(), "2026-11-26 16:04:05");
        for local in ["2026-11-26 16:04:05", "2026-11-26T16:04:05"] {
            let errs = drop(local).unwrap_err();
            assert_eq!(errs[0].field, "occurred_at");
            assert!(errs[0].problem.contains("write it in quotes"), "{errs:?}");
        }
    }

    #[test]
    fn rfc3339_with_offset_becomes_utc() {
        let mut i = good();
        i.set(
            "occurred_at",
            RawValue::Str("2026-11-26T17:04:05.9+01:00".into()),
        );
        let v = i.validate(&defaults()).unwrap();
        assert_eq!(v.record.occurred_at.to_string(), "2026-11-26 16:04:05");
        assert!(v.occurred_at_given);
    }

    #[test]
    fn each_rule_names_its_field() {
        let cases: Vec<(&str, RawValue)> = vec![
            ("idempotency_key", RawValue::Str("has space".into())),
            ("idempotency_key", RawValue::Str("k".repeat(256))),
            ("node_id", RawValue::Str(".hidden".into())),
            ("node_id", RawValue::Str("a/b".into())),
            ("user_sid", RawValue::Str("ABCD".into())),
            ("user_sid", RawValue::Str("abc".into())),
            ("amount_cents", RawValue::Int(-1)),
            ("amount_cents", RawValue::Int(1_000_000_000_001)),
            ("amount_cents", RawValue::Str("12x".into())),
            ("resource_kind", RawValue::Str("9cpu".into())),
            ("description", RawValue::Str("two\nlines".into())),
            ("occurred_at", RawValue::Str("2026-11-26 16:36:00".into())),
            ("occurred_at", RawValue::Str("yesterday".into())),
            (
                "occurred_at",
                RawValue::Str("0000-01-01T00:30:00+01:00".into()),
            ),
            ("occurred_at", RawValue::Str("1999-12-31 23:59:59".into())),
            (
                "occurred_at",
                RawValue::Str("2000-01-01T00:30:00+01:00".into()),
            ),
            ("occurred_at", RawValue::Str("2026-11-26 16:35:01".into())),
        ];
        for (name, value) in cases {
            let mut i = good();
            i.set(name, value.clone());
            let errs = i.validate(&defaults()).unwrap_err();
            assert_eq!(errs.len(), 1, "{name} {value:?}: {errs:?}");
            assert_eq!(errs[0].field, name);
        }
    }

    #[test]
    fn the_time_range_is_inclusive_and_uses_the_defaults_now() {
        for ok in [
            "2000-01-01 00:00:00",
            "2000-01-01T01:00:00+01:00",
            "2026-11-26 16:35:00",
        ] {
            let mut i = good();
            i.set("occurred_at", RawValue::Str(ok.into()));
            assert!(i.validate(&defaults()).is_ok(), "{ok}");
        }
        // A drop's mtime (the defaulted time) is checked all the same.
        let mut d = defaults();
        d.occurred_at = Some(Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).unwrap());
        let errs = good().validate(&d).unwrap_err();
        assert_eq!(errs[0].field, "occurred_at");
    }

    #[test]
    fn differing_fields_can_ignore_time() {
        let a = good().validate(&defaults()).unwrap().record;
        let mut b = a.clone();
        b.occurred_at = UtcSecond::parse("2026-11-26 10:00:00").unwrap();
        assert_eq!(a.differing_fields(&b, false), vec!["occurred_at"]);
        assert!(a.differing_fields(&b, true).is_empty());
        b.amount_cents = 1;
        assert_eq!(a.differing_fields(&b, true), vec!["amount_cents"]);
    }
    #[test]
    fn the_one_field_list_is_in_canonical_alphabetical_order() {
        let mut sorted = FIELDS;
        sorted.sort_unstable();
        assert_eq!(sorted, FIELDS, "OTOML renders keys in this order");
    }

    /// A drop without occurred_at whose file time is out of range: the
    /// problem says where the time came from.
    #[test]
    fn a_drops_file_time_out_of_range_is_named_as_such() {
        let mut d = defaults();
        d.occurred_at = Some(Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).unwrap());
        let errs = good().validate(&d).unwrap_err();
        assert_eq!(errs[0].field, "occurred_at");
        assert!(
            errs[0]
                .problem
                .contains("modification time (1970-01-01 00:00:00 UTC)"),
            "{}",
            errs[0].problem
        );
        d.occurred_at = Some(Utc.with_ymd_and_hms(2026, 11, 26, 16, 0, 0).unwrap());
        assert!(good().validate(&d).is_ok());
    }

    /// The audit holds a record of another node in this node's folder a
    /// violation: validation refuses it first.
    #[test]
    fn node_id_is_this_nodes_name_or_left_out() {
        let mut i = good();
        i.set("node_id", RawValue::Str("node-7".into()));
        assert_eq!(i.validate(&defaults()).unwrap().record.node_id, "node-7");
        i.set("node_id", RawValue::Str("node-8".into()));
        let errs = i.validate(&defaults()).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "node_id");
        assert!(errs[0].problem.contains("`node-7`"), "{}", errs[0].problem);
        assert!(
            !errs[0].problem.contains("node-8"),
            "never the value itself"
        );
    }
}
