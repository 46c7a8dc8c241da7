//! What to do about the revocation finalizer.

/// What to do about the revocation finalizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalizerStep {
    /// Nothing.
    Leave,
    /// Add it before any token is obtained, so every token obtained is revoked on delete.
    Add,
    /// Remove it: the spec no longer asks for revocation.
    Remove,
    /// The resource is being deleted: revoke, then remove it.
    Revoke,
}

/// Decides about the revocation finalizer from whether the spec has a `revocationUrl`, whether
/// the resource carries the finalizer, and whether it is being deleted.
pub fn finalizer_step(wants: bool, has: bool, deleting: bool) -> FinalizerStep {
    match (wants, has, deleting) {
        (true, true, true) => FinalizerStep::Revoke,
        (false, true, _) => FinalizerStep::Remove,
        (true, false, false) => FinalizerStep::Add,
        _ => FinalizerStep::Leave,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_finalizer_exists_exactly_while_revocation_is_asked_for_and_revokes_on_delete() {
        use FinalizerStep::*;
        assert_eq!(finalizer_step(true, false, false), Add);
        assert_eq!(finalizer_step(true, true, false), Leave);
        assert_eq!(finalizer_step(true, true, true), Revoke);
        assert_eq!(finalizer_step(false, true, false), Remove);
        assert_eq!(
            finalizer_step(false, true, true),
            Remove,
            "revocationUrl removed: let it go"
        );
        assert_eq!(finalizer_step(false, false, false), Leave);
        assert_eq!(finalizer_step(true, false, true), Leave, "never added while deleting");
    }
}
