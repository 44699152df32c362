//! Finding a member named twice in a JSON text: readers disagree on which of the two counts
//! (serde_json keeps the last, others the first), so neither herd nor its clients take one.

/// The first member name that a JSON object names twice, at any depth (`None` for valid JSON
/// without one, and for text that is not JSON).
pub(crate) fn named_twice(text: &[u8]) -> Option<String> {
    serde_json::from_slice::<NamedTwice>(text).ok()?.0
}

/// What [`named_twice`] finds in a JSON value.
struct NamedTwice(Option<String>);

impl<'de> serde::Deserialize<'de> for NamedTwice {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<NamedTwice, D::Error> {
        deserializer.deserialize_any(NamedTwiceVisitor)
    }
}

struct NamedTwiceVisitor;

impl<'de> serde::de::Visitor<'de> for NamedTwiceVisitor {
    type Value = NamedTwice;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<NamedTwice, M::Error> {
        let mut seen = std::collections::HashSet::new();
        let mut twice = None;
        while let Some(key) = map.next_key::<String>()? {
            let NamedTwice(inner) = map.next_value()?;
            if twice.is_none() {
                twice = (!seen.insert(key.clone())).then_some(key).or(inner);
            }
        }
        Ok(NamedTwice(twice))
    }

    fn visit_seq<S: serde::de::SeqAccess<'de>>(self, mut seq: S) -> Result<NamedTwice, S::Error> {
        let mut twice = None;
        while let Some(NamedTwice(inner)) = seq.next_element()? {
            twice = twice.or(inner);
        }
        Ok(NamedTwice(twice))
    }

    fn visit_bool<E>(self, _: bool) -> Result<NamedTwice, E> {
        Ok(NamedTwice(None))
    }

    fn visit_i64<E>(self, _: i64) -> Result<NamedTwice, E> {
        Ok(NamedTwice(None))
    }

    fn visit_u64<E>(self, _: u64) -> Result<NamedTwice, E> {
        Ok(NamedTwice(None))
    }

    fn visit_f64<E>(self, _: f64) -> Result<NamedTwice, E> {
        Ok(NamedTwice(None))
    }

    fn visit_str<E>(self, _: &str) -> Result<NamedTwice, E> {
        Ok(NamedTwice(None))
    }

    fn visit_unit<E>(self) -> Result<NamedTwice, E> {
        Ok(NamedTwice(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_twice_looks_at_every_depth() {
        let twice = |text: &str| named_twice(text.as_bytes());
        assert_eq!(twice(r#"{"a":1,"b":2,"a":3}"#), Some("a".into()));
        assert_eq!(twice(r#"{"a":[{"b":{"c":1,"c":2}}]}"#), Some("c".into()));
        assert_eq!(twice(r#"[{"a":1},{"a":1}]"#), None);
        assert_eq!(twice(r#"{"a":null,"b":-1.5,"c":"x","d":true}"#), None);
        assert_eq!(twice("not json"), None);
    }
}
