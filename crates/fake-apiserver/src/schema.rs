//! Custom resources checked against their CRD's structural schema, as kube-apiserver does:
//! unknown fields are pruned (and non-nullable `null`s dropped), then the OpenAPI value
//! validations (types, `required`, `enum`, `pattern`, lengths, bounds, `oneOf`/`anyOf`/`allOf`/
//! `not`) run with the messages of kube-openapi, then the `x-kubernetes-validations` CEL rules
//! (evaluated by kube's `cel` feature) unless a blocking error was found. As with
//! `CRDValidationRatcheting`, an update is not refused for values it leaves unchanged.
//!
//! Not implemented: defaulting, `format` checks, `x-kubernetes-list-type` invariants and
//! pruning of `metadata` fields.

use kube::core::cel::{CompiledSchema, ErrorKind, compile_schema, validate_compiled};
use regex::Regex;
use serde_json::{Map, Value};

use crate::field::{Bad, FieldError, go_quote};

/// The structural schema of one CRD version, with its CEL rules compiled.
#[derive(Debug)]
pub(crate) struct CrdSchema {
    root: Node,
    /// Whether any node has CEL rules (without, nothing is said about rules not checked).
    has_rules: bool,
}

#[derive(Debug, Default)]
struct Node {
    type_: Option<String>,
    nullable: bool,
    int_or_string: bool,
    preserve_unknown: bool,
    embedded: bool,
    has_default: bool,
    properties: Vec<(String, Node)>,
    additional: Option<Box<Node>>,
    items: Option<Box<Node>>,
    list_type: Option<String>,
    list_map_keys: Vec<String>,
    required: Vec<String>,
    enum_: Vec<Value>,
    max_length: Option<i64>,
    min_length: Option<i64>,
    pattern: Option<(String, Regex)>,
    maximum: Option<f64>,
    exclusive_maximum: bool,
    minimum: Option<f64>,
    exclusive_minimum: bool,
    multiple_of: Option<f64>,
    max_items: Option<i64>,
    min_items: Option<i64>,
    unique_items: bool,
    max_properties: Option<i64>,
    min_properties: Option<i64>,
    one_of: Vec<Node>,
    any_of: Vec<Node>,
    all_of: Vec<Node>,
    not: Option<Box<Node>>,
    /// This node's own `x-kubernetes-validations`, compiled without those of its children.
    rules: Option<CompiledSchema>,
}

const RULES: &str = "x-kubernetes-validations";
const META_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

impl CrdSchema {
    /// Reads an `openAPIV3Schema`. Refuses what kube-apiserver would refuse in a CRD: invalid
    /// patterns and CEL rules that do not compile.
    pub(crate) fn parse(schema: &Value) -> Result<Self, String> {
        let root = Node::parse(schema, "")?;
        Ok(Self {
            has_rules: root.has_rules(),
            root,
        })
    }

    /// Removes unknown fields and non-nullable `null`s. The root's `apiVersion`, `kind` and
    /// `metadata` are kept as they are.
    pub(crate) fn prune(&self, obj: &mut Value) {
        self.root.prune(obj, true);
    }

    /// Validates an object about to be stored. For `/status` writes (`status_only`) the schema
    /// checks cover `.status` only; CEL rules run on the whole object either way. `old` is the
    /// stored version of an update.
    pub(crate) fn validate(
        &self,
        new: &Value,
        old: Option<&Value>,
        status_only: bool,
        mut prior: Vec<FieldError>,
    ) -> Vec<FieldError> {
        let mut found = Vec::new();
        if status_only {
            if let (Some(status), Some(node)) = (new.get("status"), self.root.property("status")) {
                node.check(status, old.and_then(|o| o.get("status")), "", &mut found);
            }
            prior.extend(found.into_iter().map(|e| e.into_field_error(Some("status"))));
        } else {
            self.root.check(new, old, "", &mut found);
            prior.extend(found.into_iter().map(|e| e.into_field_error(None)));
        }
        let blocking = prior.iter().any(|e| {
            use crate::field::ErrorType::*;
            matches!(e.kind, NotSupported | Required | TooLong | TooMany | TypeInvalid)
        });
        if !self.has_rules {
            return prior;
        }
        if blocking {
            prior.push(FieldError::invalid_with(
                "<nil>",
                Bad::Value(Value::Null),
                "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
            ));
        } else {
            self.root.check_rules(new, old, &Path::Root, &mut prior);
        }
        prior
    }
}

/// A `field.Path` as CEL errors build it: the root is `<nil>`, map keys are subscripts.
#[derive(Clone)]
enum Path {
    Root,
    At(String),
}

impl Path {
    fn child(&self, name: &str) -> Path {
        match self {
            Path::Root => Path::At(name.to_string()),
            Path::At(p) => Path::At(format!("{p}.{name}")),
        }
    }

    fn subscript(&self, key: &str) -> Path {
        match self {
            Path::Root => Path::At(format!("[{key}]")),
            Path::At(p) => Path::At(format!("{p}[{key}]")),
        }
    }

    fn text(&self) -> String {
        match self {
            Path::Root => "<nil>".to_string(),
            Path::At(p) => p.clone(),
        }
    }
}

/// One kube-openapi validation result, before it becomes a `field.Error`
/// (`kubeOpenAPIResultToFieldErrors`).
enum Found {
    Required(String),
    Enum {
        name: String,
        value: Value,
        allowed: Vec<Value>,
    },
    TooLong {
        name: String,
        max: i64,
    },
    TooMany {
        name: String,
        actual: i64,
        max: i64,
    },
    InvalidType {
        name: String,
        value: Value,
        message: String,
    },
    Other {
        name: String,
        value: Value,
        message: String,
    },
    /// Not an `errors.Validation` (the `oneOf`/`anyOf`/`allOf`/`not` messages).
    Composite(String),
}

impl Found {
    fn into_field_error(self, prefix: Option<&str>) -> FieldError {
        let path = |name: &str| {
            let name = name.trim_start_matches('.');
            match (prefix, name) {
                (None, "") => "<nil>".to_string(),
                (Some(p), "") => p.to_string(),
                (None, n) => n.to_string(),
                (Some(p), n) => format!("{p}.{n}"),
            }
        };
        match self {
            Found::Required(name) => FieldError::required(path(&name), ""),
            Found::Enum { name, value, allowed } => {
                let allowed: Vec<String> = allowed
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), String::from))
                    .collect();
                FieldError::not_supported(path(&name), value, &allowed)
            }
            Found::TooLong { name, max } => FieldError::too_long(path(&name), max),
            Found::TooMany { name, actual, max } => FieldError::too_many(path(&name), actual, max),
            Found::InvalidType { name, value, message } => FieldError::type_invalid(path(&name), value, message),
            Found::Other { name, value, message } => FieldError::invalid(path(&name), value, message),
            Found::Composite(message) => FieldError::invalid(prefix.unwrap_or("<nil>"), "", message),
        }
    }
}

/// kube-openapi's path of a property: `name` at the root, `path.name` below.
fn prop_path(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// The JSON type kube-openapi infers for a value.
fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `%v` of a bound: integral bounds print without a fraction.
fn bound(b: f64) -> String {
    if b.fract() == 0.0 && b.abs() < 1e15 {
        format!("{}", b as i64)
    } else {
        format!("{b}")
    }
}

impl Node {
    fn parse(s: &Value, at: &str) -> Result<Node, String> {
        let num = |k: &str| s.get(k).and_then(Value::as_f64);
        let int = |k: &str| s.get(k).and_then(Value::as_i64);
        let flag = |k: &str| s.get(k).and_then(Value::as_bool) == Some(true);
        let branches = |k: &str| -> Result<Vec<Node>, String> {
            s.get(k)
                .and_then(Value::as_array)
                .map(|b| b.iter().map(|b| Node::parse(b, at)).collect())
                .unwrap_or_else(|| Ok(Vec::new()))
        };
        let mut properties = Vec::new();
        if let Some(props) = s.get("properties").and_then(Value::as_object) {
            for (name, p) in props {
                properties.push((name.clone(), Node::parse(p, &prop_path(at, name))?));
            }
        }
        let pattern = match s.get("pattern").and_then(Value::as_str) {
            Some(p) => Some((
                p.to_string(),
                Regex::new(p).map_err(|e| format!("{at}: invalid pattern {p:?}: {e}"))?,
            )),
            None => None,
        };
        let rules = match s.get(RULES).and_then(Value::as_array) {
            Some(r) if !r.is_empty() => {
                let compiled = compile_schema(&own_rules_only(s));
                if compiled.has_errors() {
                    let errors: Vec<String> = compiled.compilation_errors().iter().map(|e| e.to_string()).collect();
                    return Err(format!("{at}: x-kubernetes-validations: {}", errors.join("; ")));
                }
                Some(compiled)
            }
            _ => None,
        };
        Ok(Node {
            type_: s.get("type").and_then(Value::as_str).map(String::from),
            nullable: flag("nullable"),
            int_or_string: flag("x-kubernetes-int-or-string"),
            preserve_unknown: flag("x-kubernetes-preserve-unknown-fields"),
            embedded: flag("x-kubernetes-embedded-resource"),
            has_default: s.get("default").is_some(),
            properties,
            additional: match s.get("additionalProperties") {
                Some(a) if a.is_object() => Some(Box::new(Node::parse(a, at)?)),
                _ => None,
            },
            items: match s.get("items") {
                Some(i) if i.is_object() => Some(Box::new(Node::parse(i, &format!("{at}[]"))?)),
                _ => None,
            },
            list_type: s
                .get("x-kubernetes-list-type")
                .and_then(Value::as_str)
                .map(String::from),
            list_map_keys: s
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).map(String::from).collect())
                .unwrap_or_default(),
            required: s
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).map(String::from).collect())
                .unwrap_or_default(),
            enum_: s.get("enum").and_then(Value::as_array).cloned().unwrap_or_default(),
            max_length: int("maxLength"),
            min_length: int("minLength"),
            pattern,
            maximum: num("maximum"),
            exclusive_maximum: flag("exclusiveMaximum"),
            minimum: num("minimum"),
            exclusive_minimum: flag("exclusiveMinimum"),
            multiple_of: num("multipleOf"),
            max_items: int("maxItems"),
            min_items: int("minItems"),
            unique_items: flag("uniqueItems"),
            max_properties: int("maxProperties"),
            min_properties: int("minProperties"),
            one_of: branches("oneOf")?,
            any_of: branches("anyOf")?,
            all_of: branches("allOf")?,
            not: match s.get("not") {
                Some(n) => Some(Box::new(Node::parse(n, at)?)),
                None => None,
            },
            rules,
        })
    }

    fn has_rules(&self) -> bool {
        self.rules.is_some()
            || self.properties.iter().any(|(_, p)| p.has_rules())
            || self.additional.as_ref().is_some_and(|a| a.has_rules())
            || self.items.as_ref().is_some_and(|i| i.has_rules())
    }

    fn property(&self, name: &str) -> Option<&Node> {
        self.properties.iter().find(|(n, _)| n == name).map(|(_, p)| p)
    }

    /// The schema of a map entry: a declared property, else `additionalProperties`.
    fn field(&self, name: &str) -> Option<&Node> {
        self.property(name).or(self.additional.as_deref())
    }

    /// `pruning.Prune` followed by `PruneNonNullableNullsWithoutDefaults`.
    fn prune(&self, value: &mut Value, keep_meta: bool) {
        match value {
            Value::Object(map) => {
                let keep_meta = keep_meta || self.embedded;
                map.retain(|k, v| {
                    if keep_meta && META_FIELDS.contains(&k.as_str()) {
                        return true;
                    }
                    match self.field(k) {
                        Some(node) => !(v.is_null() && !node.nullable && !node.has_default),
                        None => self.preserve_unknown,
                    }
                });
                for (k, v) in map.iter_mut() {
                    if keep_meta && META_FIELDS.contains(&k.as_str()) {
                        continue;
                    }
                    if let Some(node) = self.field(k) {
                        node.prune(v, false);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(node) = &self.items {
                    items.iter_mut().for_each(|i| node.prune(i, false));
                }
            }
            _ => {}
        }
    }

    fn types(&self) -> Vec<&str> {
        if self.int_or_string {
            return vec!["integer", "string"];
        }
        self.type_.as_deref().into_iter().collect()
    }

    /// The value of the same element in the old object, when there is one (ratcheting): map
    /// entries by key, list items only for `x-kubernetes-list-type: map` or `set`.
    fn correlate<'a>(&self, old: Option<&'a Value>, item: &Value) -> Option<&'a Value> {
        let old = old?.as_array()?;
        match self.list_type.as_deref() {
            Some("set") => old.iter().find(|o| *o == item),
            Some("map") => old
                .iter()
                .find(|o| self.list_map_keys.iter().all(|k| o.get(k) == item.get(k))),
            _ => None,
        }
    }

    /// kube-openapi's `SchemaValidator.Validate` at `path`. Unchanged values are not checked.
    fn check(&self, value: &Value, old: Option<&Value>, path: &str, out: &mut Vec<Found>) {
        if old == Some(value) {
            return;
        }
        let types = self.types();
        if value.is_null() {
            if !types.is_empty() && !self.nullable {
                out.push(Found::InvalidType {
                    name: path.to_string(),
                    value: Value::String("null".into()),
                    message: format!("{path} in body must be of type {}: \"null\"", types.join(",")),
                });
            }
            self.check_enum(value, path, out);
            return;
        }
        let actual = type_of(value);
        let float_int =
            actual == "number" && value.as_f64().is_some_and(|f| f.fract() == 0.0) && types.contains(&"integer");
        let int_float = actual == "integer" && types.contains(&"number");
        if !types.is_empty() && !types.contains(&actual) && !float_int && !int_float {
            out.push(Found::InvalidType {
                name: path.to_string(),
                value: Value::String(actual.into()),
                message: format!(
                    "{path} in body must be of type {}: {}",
                    types.join(","),
                    go_quote(actual)
                ),
            });
        }
        self.check_composition(value, old, path, out);
        match value {
            Value::String(s) => self.check_string(s, value, path, out),
            Value::Number(_) => self.check_number(value, path, out),
            Value::Array(items) => self.check_items(items, old, path, out),
            _ => {}
        }
        self.check_enum(value, path, out);
        if let Value::Object(map) = value {
            self.check_object(map, old, path, out);
        }
    }

    fn check_enum(&self, value: &Value, path: &str, out: &mut Vec<Found>) {
        if !self.enum_.is_empty() && !self.enum_.contains(value) {
            out.push(Found::Enum {
                name: path.to_string(),
                value: value.clone(),
                allowed: self.enum_.clone(),
            });
        }
    }

    fn check_composition(&self, value: &Value, old: Option<&Value>, path: &str, out: &mut Vec<Found>) {
        let run = |n: &Node| {
            let mut found = Vec::new();
            n.check(value, old, path, &mut found);
            found
        };
        // Of failing branches, the errors of the one that came closest (fewest errors) are shown.
        let closest = |results: Vec<Vec<Found>>| results.into_iter().filter(|r| !r.is_empty()).min_by_key(Vec::len);
        if !self.any_of.is_empty() {
            let results: Vec<Vec<Found>> = self.any_of.iter().map(run).collect();
            if results.iter().all(|r| !r.is_empty()) {
                out.push(Found::Composite(format!(
                    "{} must validate at least one schema (anyOf)",
                    go_quote(path)
                )));
                out.extend(closest(results).unwrap_or_default());
            }
        }
        if !self.one_of.is_empty() {
            let results: Vec<Vec<Found>> = self.one_of.iter().map(run).collect();
            let valid = results.iter().filter(|r| r.is_empty()).count();
            if valid != 1 {
                let why = match valid {
                    0 => "Found none valid".to_string(),
                    n => format!("Found {n} valid alternatives"),
                };
                out.push(Found::Composite(format!(
                    "{} must validate one and only one schema (oneOf). {why}",
                    go_quote(path)
                )));
                if valid == 0 {
                    out.extend(closest(results).unwrap_or_default());
                }
            }
        }
        if !self.all_of.is_empty() {
            let mut valid = 0;
            for branch in &self.all_of {
                let found = run(branch);
                if found.is_empty() {
                    valid += 1;
                }
                out.extend(found);
            }
            if valid != self.all_of.len() {
                let none = if valid == 0 { ". None validated" } else { "" };
                out.push(Found::Composite(format!(
                    "{} must validate all the schemas (allOf){none}",
                    go_quote(path)
                )));
            }
        }
        if let Some(not) = &self.not
            && run(not).is_empty()
        {
            out.push(Found::Composite(format!(
                "{} must not validate the schema (not)",
                go_quote(path)
            )));
        }
    }

    fn check_string(&self, s: &str, value: &Value, path: &str, out: &mut Vec<Found>) {
        let chars = s.chars().count() as i64;
        let other = |message: String| Found::Other {
            name: path.to_string(),
            value: value.clone(),
            message,
        };
        if let Some(max) = self.max_length
            && chars > max
        {
            out.push(Found::TooLong {
                name: path.to_string(),
                max,
            });
        } else if let Some(min) = self.min_length
            && chars < min
        {
            out.push(other(format!("{path} in body should be at least {min} chars long")));
        } else if let Some((source, re)) = &self.pattern
            && !re.is_match(s)
        {
            out.push(other(format!("{path} in body should match '{source}'")));
        }
    }

    fn check_number(&self, value: &Value, path: &str, out: &mut Vec<Found>) {
        let n = value.as_f64().unwrap_or_default();
        let mut other = |message: String| {
            out.push(Found::Other {
                name: path.to_string(),
                value: value.clone(),
                message,
            })
        };
        if let Some(m) = self.multiple_of
            && m != 0.0
            && (n / m).fract() != 0.0
        {
            other(format!("{path} in body should be a multiple of {}", bound(m)));
        }
        if let Some(max) = self.maximum
            && (n > max || (self.exclusive_maximum && n >= max))
        {
            let how = if self.exclusive_maximum {
                "less than"
            } else {
                "less than or equal to"
            };
            other(format!("{path} in body should be {how} {}", bound(max)));
        }
        if let Some(min) = self.minimum
            && (n < min || (self.exclusive_minimum && n <= min))
        {
            let how = if self.exclusive_minimum {
                "greater than"
            } else {
                "greater than or equal to"
            };
            other(format!("{path} in body should be {how} {}", bound(min)));
        }
    }

    fn check_items(&self, items: &[Value], old: Option<&Value>, path: &str, out: &mut Vec<Found>) {
        if let Some(node) = &self.items {
            for (i, item) in items.iter().enumerate() {
                node.check(item, self.correlate(old, item), &format!("{path}[{i}]"), out);
            }
        }
        check_count((self.min_items, self.max_items), items.len(), "items", path, out);
        if self.unique_items && items.iter().enumerate().any(|(i, a)| items[..i].contains(a)) {
            out.push(Found::Other {
                name: path.to_string(),
                value: Value::String(String::new()),
                message: format!("{path} in body shouldn't contain duplicates"),
            });
        }
    }

    fn check_object(&self, map: &Map<String, Value>, old: Option<&Value>, path: &str, out: &mut Vec<Found>) {
        check_count(
            (self.min_properties, self.max_properties),
            map.len(),
            "properties",
            path,
            out,
        );
        let old_field = |k: &str| old.and_then(|o| o.get(k));
        if let Some(additional) = &self.additional {
            for (k, v) in map {
                if self.property(k).is_none() {
                    additional.check(v, old_field(k), &format!("{path}.{k}"), out);
                }
            }
        }
        for (name, node) in &self.properties {
            if let Some(v) = map.get(name) {
                node.check(v, old_field(name), &prop_path(path, name), out);
            }
        }
        for k in &self.required {
            if !map.contains_key(k) {
                out.push(Found::Required(format!("{path}.{k}")));
            }
        }
    }

    /// The CEL rules of this node and, recursively, of its children; unchanged values skipped.
    fn check_rules(&self, value: &Value, old: Option<&Value>, path: &Path, out: &mut Vec<FieldError>) {
        if old == Some(value) || value.is_null() {
            return;
        }
        if let Some(rules) = &self.rules
            && let Err(failed) = validate_compiled(rules, value, old)
        {
            for e in failed.iter() {
                let at = match e.field_path.trim_start_matches('.') {
                    "" => path.clone(),
                    rule_path => path.child(rule_path),
                };
                out.push(self.rule_error(e, value, &at));
            }
        }
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let old_v = old.and_then(|o| o.get(k));
                    if let Some(node) = self.property(k) {
                        node.check_rules(v, old_v, &path.child(k), out);
                    } else if let Some(node) = &self.additional {
                        node.check_rules(v, old_v, &path.subscript(k), out);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(node) = &self.items {
                    for (i, item) in items.iter().enumerate() {
                        node.check_rules(item, self.correlate(old, item), &path.subscript(&i.to_string()), out);
                    }
                }
            }
            _ => {}
        }
    }

    /// A failed rule as the API server reports it: objects and lists are not shown, scalars are.
    fn rule_error(&self, e: &kube::core::cel::ValidationError, value: &Value, at: &Path) -> FieldError {
        let shown = if value.is_object() || value.is_array() {
            Bad::Omit
        } else {
            Bad::Value(value.clone())
        };
        let detail = e.message.trim().to_string();
        if e.kind != ErrorKind::ValidationFailure {
            let type_ = self.type_.clone().unwrap_or_else(|| type_of(value).to_string());
            return FieldError::invalid(at.text(), type_, detail);
        }
        match e.reason.as_deref() {
            Some("FieldValueForbidden") => FieldError::forbidden(at.text(), detail),
            Some("FieldValueRequired") => FieldError::required(at.text(), detail),
            Some("FieldValueDuplicate") => FieldError::duplicate(at.text(), shown),
            _ => FieldError::invalid_with(at.text(), shown, detail),
        }
    }
}

/// `minItems`/`maxItems` or `minProperties`/`maxProperties` (`what`): too few is an invalid
/// value, too many is `TooMany`.
fn check_count(bounds: (Option<i64>, Option<i64>), size: usize, what: &str, path: &str, out: &mut Vec<Found>) {
    let size = size as i64;
    if let Some(min) = bounds.0
        && size < min
    {
        out.push(Found::Other {
            name: path.to_string(),
            value: size.into(),
            message: format!("{path} in body should have at least {min} {what}"),
        });
    }
    if let Some(max) = bounds.1
        && size > max
    {
        out.push(Found::TooMany {
            name: path.to_string(),
            actual: size,
            max,
        });
    }
}

/// A copy of a schema node whose descendants carry no `x-kubernetes-validations`, so that
/// compiling it yields this node's rules alone (each node's rules run where the walk is, with
/// Kubernetes' paths).
fn own_rules_only(schema: &Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(map) => {
                map.remove(RULES);
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut copy = schema.clone();
    if let Value::Object(map) = &mut copy {
        for (k, v) in map.iter_mut() {
            if k != RULES {
                strip(v);
            }
        }
    }
    copy
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> CrdSchema {
        CrdSchema::parse(&json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["size"],
                    "properties": {
                        "size": { "type": "integer", "maximum": 10.0 },
                        "name": { "type": "string", "x-kubernetes-validations": [{ "rule": "self.size() < 5", "message": "name too long" }] },
                        "tags": { "type": "object", "additionalProperties": { "type": "string" } },
                        "free": { "type": "object", "x-kubernetes-preserve-unknown-fields": true },
                        "opt": { "type": "string" }
                    }
                }
            }
        }))
        .unwrap()
    }

    #[test]
    fn prunes_unknown_fields_and_nulls() {
        let mut obj = json!({
            "apiVersion": "x/v1", "kind": "X", "metadata": { "name": "a", "odd": 1 },
            "spec": { "size": 1, "extra": true, "opt": null, "tags": { "a": "b" }, "free": { "any": 1 } },
            "status": { "x": 1 }
        });
        schema().prune(&mut obj);
        assert_eq!(
            obj,
            json!({
                "apiVersion": "x/v1", "kind": "X", "metadata": { "name": "a", "odd": 1 },
                "spec": { "size": 1, "tags": { "a": "b" }, "free": { "any": 1 } }
            })
        );
    }

    #[test]
    fn reports_schema_errors_then_rules() {
        let s = schema();
        let errs = s.validate(&json!({ "spec": { "size": "big" } }), None, false, Vec::new());
        let messages: Vec<String> = errs.iter().map(FieldError::message).collect();
        assert_eq!(
            messages,
            vec![
                "spec.size: Invalid value: \"string\": spec.size in body must be of type integer: \"string\"",
                "<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
            ]
        );
        let errs = s.validate(
            &json!({ "spec": { "size": 11, "name": "abcdef" } }),
            None,
            false,
            Vec::new(),
        );
        let messages: Vec<String> = errs.iter().map(FieldError::message).collect();
        assert_eq!(
            messages,
            vec![
                "spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10",
                "spec.name: Invalid value: \"abcdef\": name too long",
            ]
        );
        // Unchanged values are not checked again (ratcheting).
        let old = json!({ "spec": { "size": 11 } });
        assert!(s.validate(&old, Some(&old), false, Vec::new()).is_empty());
    }
}
