//! Chained logins (`refreshableToken.steps`): requests sent in order before the login request,
//! each offering the values it extracted to the later templates as
//! `{{ steps.<name>.<key> }}` (log in → session → token). The steps as compiled; the operator's
//! engine sends them.

/// The template variable of a step's value (see [`crate::TemplateContext`]'s nesting of `steps.`).
pub fn variable(step: &str, key: &str) -> String {
    format!("steps.{step}.{key}")
}
