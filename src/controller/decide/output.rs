//! Whether an output Secret already is what would be written.

use std::collections::BTreeMap;

/// What an output Secret looks like, as far as the operator manages it.
#[derive(Debug, Clone, Copy)]
pub struct OutputView<'a> {
    pub data: &'a BTreeMap<String, String>,
    pub annotations: &'a BTreeMap<String, String>,
    pub labels: &'a BTreeMap<String, String>,
    /// Whether it names this resource (uid) as its owner.
    pub owned: bool,
}

/// Whether the existing output already is what would be written: same data, every annotation
/// and label the operator sets present with the same value, owned by the resource. Other
/// annotations and labels (added by people or tools) do not count.
pub fn output_unchanged(
    existing: OutputView<'_>,
    data: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    let contains = |have: &BTreeMap<String, String>, want: &BTreeMap<String, String>| {
        want.iter().all(|(k, v)| have.get(k) == Some(v))
    };
    existing.owned
        && existing.data == data
        && contains(existing.annotations, annotations)
        && contains(existing.labels, labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_unchanged_only_when_data_annotations_labels_and_owner_match() {
        let m = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let data = m(&[("access_token", "t")]);
        let ann = m(&[("a", "1")]);
        let lbl = m(&[("l", "x")]);
        let more_ann = m(&[("a", "1"), ("someone-else", "y")]);
        fn view<'a>(
            data: &'a BTreeMap<String, String>,
            annotations: &'a BTreeMap<String, String>,
            labels: &'a BTreeMap<String, String>,
            owned: bool,
        ) -> OutputView<'a> {
            OutputView {
                data,
                annotations,
                labels,
                owned,
            }
        }
        let old = m(&[("access_token", "old")]);
        let other_ann = m(&[("a", "2")]);
        let no_labels = m(&[]);
        assert!(output_unchanged(view(&data, &more_ann, &lbl, true), &data, &ann, &lbl));
        assert!(
            !output_unchanged(view(&data, &ann, &lbl, false), &data, &ann, &lbl),
            "not owned"
        );
        assert!(!output_unchanged(view(&old, &ann, &lbl, true), &data, &ann, &lbl));
        assert!(!output_unchanged(
            view(&data, &other_ann, &lbl, true),
            &data,
            &ann,
            &lbl
        ));
        assert!(!output_unchanged(
            view(&data, &ann, &no_labels, true),
            &data,
            &ann,
            &lbl
        ));
    }
}
