//! Finding a member named twice in a JSON text: readers disagree on which of the two counts
//! (serde_json keeps the last, others the first), so neither herd nor its clients take one.

use std::borrow::Cow;
use std::collections::HashSet;

/// The first member name that a JSON object names twice, at any depth (`None` for valid JSON
/// without one); an error for text that is not JSON or is nested deeper than serde_json reads
/// (128 levels), which a parse that skips the deep part (an unknown member's value) may have
/// taken.
pub(crate) fn named_twice(text: &[u8]) -> serde_json::Result<Option<String>> {
    Ok(serde_json::from_slice::<NamedTwice>(text)?.0)
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
        let mut seen = Names::Few(Vec::new());
        let mut twice = None;
        while let Some(Key(key)) = map.next_key()? {
            let NamedTwice(inner) = map.next_value()?;
            if twice.is_none() {
                twice = seen.add(key).or(inner);
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

/// The member names of one object so far: a list while it is short (most are), a set beyond.
enum Names<'de> {
    Few(Vec<Cow<'de, str>>),
    Many(HashSet<Cow<'de, str>>),
}

/// How many names a list holds before they move to a set.
const FEW: usize = 16;

impl<'de> Names<'de> {
    /// Adds `name`: the name if it was there already.
    fn add(&mut self, name: Cow<'de, str>) -> Option<String> {
        match self {
            Names::Few(few) if few.contains(&name) => Some(name.into_owned()),
            Names::Few(few) if few.len() < FEW => {
                few.push(name);
                None
            }
            Names::Few(few) => {
                let mut many: HashSet<_> = few.drain(..).collect();
                many.insert(name);
                *self = Names::Many(many);
                None
            }
            Names::Many(many) if many.contains(&name) => Some(name.into_owned()),
            Names::Many(many) => {
                many.insert(name);
                None
            }
        }
    }
}

/// A member name, borrowed from the text unless it had to be unescaped: a status of thousands
/// of workers names tens of thousands of members.
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Key<'de>, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> serde::de::Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E>(self, name: &'de str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(name)))
    }

    fn visit_str<E>(self, name: &str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(name.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_twice_looks_at_every_depth() {
        let twice = |text: &str| named_twice(text.as_bytes()).unwrap_or_default();
        assert_eq!(twice(r#"{"a":1,"b":2,"a":3}"#), Some("a".into()));
        assert_eq!(twice(r#"{"a":[{"b":{"c":1,"c":2}}]}"#), Some("c".into()));
        assert_eq!(twice(r#"[{"a":1},{"a":1}]"#), None);
        assert_eq!(twice(r#"{"a":null,"b":-1.5,"c":"x","d":true}"#), None);
        assert!(named_twice(b"not json").is_err());
        let deep = format!("{}1{}", "[".repeat(129), "]".repeat(129));
        assert!(named_twice(deep.as_bytes()).is_err(), "too deep to read");
        // Escaped names are compared as they read.
        assert_eq!(twice(r#"{"a":1,"\u0061":2}"#), Some("a".into()));
        assert_eq!(twice(r#"{"\n":1,"\u000a":2}"#), Some("\n".into()));
        // Past the short list, in the set.
        let many = |last: &str| {
            let members: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
            format!("{{{},\"{last}\":0}}", members.join(","))
        };
        assert_eq!(twice(&many("k3")), Some("k3".into()));
        assert_eq!(twice(&many("k39")), Some("k39".into()));
        assert_eq!(twice(&many("other")), None);
    }
}
