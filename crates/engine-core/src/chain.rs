//! Chained logins (`refreshableToken.steps`): requests sent in order before the login request,
//! each offering the values it extracted to the later templates as
//! `{{ steps.<name>.<key> }}` (log in → session → token). The steps as compiled; the operator's
//! engine sends them.

/// The template variable of a step's value (see [`crate::TemplateContext`]'s nesting of `steps.`).
pub fn variable(step: &str, key: &str) -> String {
    format!("steps.{step}.{key}")
}

/// The template variable of a stored lookup value (`<lookup>.<key>` → `lookup.<lookup>.<key>`).
pub fn lookup_variable(stored: &str) -> String {
    format!("lookup.{stored}")
}

/// Whether `token` lacks a value of one of the flow's lookups: they have not run for its grant
/// yet (a new consent), or the lookups changed.
pub fn lookups_due(flow: &crate::flow::Flow, token: &crate::state::TokenState) -> bool {
    flow.lookups.iter().any(|l| {
        l.extract
            .iter()
            .any(|(key, _)| !token.lookups.contains_key(&format!("{}.{key}", l.name)))
    })
}
