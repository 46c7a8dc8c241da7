//! Field-level validation errors, rendered as Kubernetes renders them (`field.Error` in
//! `k8s.io/apimachinery/pkg/util/validation/field`, as of Kubernetes 1.36): each becomes one
//! `StatusCause` (`reason`, `message` without the field, `field`) of a `422 Invalid` answer,
//! and the `Status` message joins them as `<Kind> "<name>" is invalid: <field>: <message>`.

use serde_json::Value;

/// `field.ErrorType`: the cause's `reason` and the words that start its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorType {
    Required,
    Duplicate,
    Invalid,
    NotSupported,
    Forbidden,
    TooLong,
    TooMany,
    TypeInvalid,
}

impl ErrorType {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::Required => "FieldValueRequired",
            Self::Duplicate => "FieldValueDuplicate",
            Self::Invalid => "FieldValueInvalid",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Forbidden => "FieldValueForbidden",
            Self::TooLong => "FieldValueTooLong",
            Self::TooMany => "FieldValueTooMany",
            Self::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    fn words(self) -> &'static str {
        match self {
            Self::Required => "Required value",
            Self::Duplicate => "Duplicate value",
            Self::Invalid | Self::TypeInvalid => "Invalid value",
            Self::NotSupported => "Unsupported value",
            Self::Forbidden => "Forbidden",
            Self::TooLong => "Too long",
            Self::TooMany => "Too many",
        }
    }
}

/// The offending value as the message shows it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Bad {
    /// Not shown (`field.OmitValueType`, and always for Required, Forbidden and TooLong).
    Omit,
    /// A JSON value: strings quoted Go-style, numbers and booleans bare, the rest as JSON.
    Value(Value),
    /// Already rendered (JSON whose field order must follow the Go struct).
    Raw(String),
}

/// One `field.Error`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FieldError {
    pub kind: ErrorType,
    /// The field path, e.g. `data[a b]` or `metadata.ownerReferences`.
    pub field: String,
    pub value: Bad,
    pub detail: String,
}

impl FieldError {
    fn new(kind: ErrorType, field: impl Into<String>, value: Bad, detail: impl Into<String>) -> Self {
        Self {
            kind,
            field: field.into(),
            value,
            detail: detail.into(),
        }
    }

    pub(crate) fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Required, field, Bad::Omit, detail)
    }

    pub(crate) fn invalid(field: impl Into<String>, value: impl Into<Value>, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Invalid, field, Bad::Value(value.into()), detail)
    }

    pub(crate) fn invalid_with(field: impl Into<String>, value: Bad, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Invalid, field, value, detail)
    }

    pub(crate) fn type_invalid(field: impl Into<String>, value: impl Into<Value>, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::TypeInvalid, field, Bad::Value(value.into()), detail)
    }

    pub(crate) fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Forbidden, field, Bad::Omit, detail)
    }

    pub(crate) fn duplicate(field: impl Into<String>, value: Bad) -> Self {
        Self::new(ErrorType::Duplicate, field, value, "")
    }

    /// `field.TooLong`: the value is never shown.
    pub(crate) fn too_long(field: impl Into<String>, max: i64) -> Self {
        let detail = match max {
            m if m < 0 => "value is too long".to_string(),
            1 => "may not be more than 1 byte".to_string(),
            m => format!("may not be more than {m} bytes"),
        };
        Self::new(ErrorType::TooLong, field, Bad::Omit, detail)
    }

    /// `field.TooMany`.
    pub(crate) fn too_many(field: impl Into<String>, actual: i64, max: i64) -> Self {
        let detail = match max {
            m if m < 0 => "has too many items".to_string(),
            1 => "must have at most 1 item".to_string(),
            m => format!("must have at most {m} items"),
        };
        let value = if actual >= 0 {
            Bad::Value(actual.into())
        } else {
            Bad::Omit
        };
        Self::new(ErrorType::TooMany, field, value, detail)
    }

    /// `field.NotSupported`: lists the supported values.
    pub(crate) fn not_supported(field: impl Into<String>, value: impl Into<Value>, supported: &[String]) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(ErrorType::NotSupported, field, Bad::Value(value.into()), detail)
    }

    /// `ErrorBody()`: the message without the field, as in a `StatusCause`.
    pub(crate) fn body(&self) -> String {
        let words = self.kind.words();
        let mut s = match (&self.kind, &self.value) {
            (ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong, _) | (_, Bad::Omit) => words.to_string(),
            (_, Bad::Raw(raw)) => format!("{words}: {raw}"),
            (_, Bad::Value(v)) => format!("{words}: {}", render(v)),
        };
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    /// `Error()`: `<field>: <body>`.
    pub(crate) fn message(&self) -> String {
        format!("{}: {}", self.field, self.body())
    }
}

/// How `ErrorBody` prints a value: `%q` for strings, `%v` for numbers and booleans, JSON otherwise.
fn render(v: &Value) -> String {
    match v {
        Value::String(s) => go_quote(s),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// Go's `strconv.Quote` for the characters that occur in practice.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `ErrorList.ToAggregate().Error()`: one message alone, several in brackets, duplicates once.
pub(crate) fn aggregate(errors: &[FieldError]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for e in errors {
        let m = e.message();
        if !seen.contains(&m) {
            seen.push(m);
        }
    }
    match seen.len() {
        1 => seen.remove(0),
        _ => format!("[{}]", seen.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_follow_kubernetes() {
        let e = FieldError::invalid("data[a b]", "a b", "bad key");
        assert_eq!(e.message(), "data[a b]: Invalid value: \"a b\": bad key");
        assert_eq!(FieldError::required("spec.x", "").body(), "Required value");
        assert_eq!(
            FieldError::too_long("data", 1_048_576).body(),
            "Too long: may not be more than 1048576 bytes"
        );
        assert_eq!(
            FieldError::forbidden("immutable", "field is immutable when `immutable` is set").body(),
            "Forbidden: field is immutable when `immutable` is set"
        );
        assert_eq!(
            FieldError::not_supported("spec.m", "DELETE", &["GET".into(), "POST".into()]).body(),
            "Unsupported value: \"DELETE\": supported values: \"GET\", \"POST\""
        );
        assert_eq!(
            FieldError::invalid_with("spec", Bad::Omit, "rule").body(),
            "Invalid value: rule"
        );
        assert_eq!(
            FieldError::invalid("x", 150, "too big").body(),
            "Invalid value: 150: too big"
        );
    }

    #[test]
    fn aggregate_brackets_several_and_drops_duplicates() {
        let a = FieldError::required("a", "");
        let b = FieldError::required("b", "");
        assert_eq!(aggregate(std::slice::from_ref(&a)), "a: Required value");
        assert_eq!(aggregate(&[a.clone(), a.clone()]), "a: Required value");
        assert_eq!(aggregate(&[a, b]), "[a: Required value, b: Required value]");
    }
}
