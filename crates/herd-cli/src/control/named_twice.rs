//! Finding a member named twice in a JSON text: readers disagree on which of the two counts
//! (serde_json keeps the last, others the first), so neither herd nor its clients take one.

use std::borrow::Cow;
use std::collections::HashSet;

use serde_json::value::RawValue;

/// The first member name that a JSON object names twice, at any depth (`None` for valid JSON
/// without one); an error for text that is not JSON or is nested deeper than [`MAX_DEPTH`],
/// which a parse that skips the deep part (an unknown member's value) may have taken. Numbers
/// are not read, only skipped, as such a parse skips them: one out of `f64`'s range is no
/// reason to refuse a text.
pub(crate) fn named_twice(text: &[u8]) -> serde_json::Result<Option<String>> {
    // Too deep: the error a read as any JSON gives, with where it stopped.
    twice_in(serde_json::from_slice(text)?, 0).map_err(|e| {
        serde_json::from_slice::<serde_json::Value>(text)
            .err()
            .unwrap_or(e)
    })
}

/// How deep [`named_twice`] looks: serde_json's own limit.
const MAX_DEPTH: usize = 128;

/// [`named_twice`] of one value, `depth` containers down.
fn twice_in(value: &RawValue, depth: usize) -> serde_json::Result<Option<String>> {
    let text = value.get();
    let container = matches!(text.as_bytes().first(), Some(b'{' | b'['));
    if container && depth == MAX_DEPTH {
        return Err(serde::de::Error::custom("recursion limit exceeded"));
    }
    match text.as_bytes().first() {
        Some(b'{') => {
            let Members(members) = serde_json::from_str(text)?;
            let mut seen = Names::Few(Vec::new());
            for (name, value) in members {
                if let Some(twice) = seen.add(name) {
                    return Ok(Some(twice));
                }
                if let Some(twice) = twice_in(value, depth + 1)? {
                    return Ok(Some(twice));
                }
            }
            Ok(None)
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text)?;
            for item in items {
                if let Some(twice) = twice_in(item, depth + 1)? {
                    return Ok(Some(twice));
                }
            }
            Ok(None)
        }
        _ => Ok(None),
    }
}

/// An object's members in document order, names given twice kept, values unread.
struct Members<'de>(Vec<(Cow<'de, str>, &'de RawValue)>);

impl<'de> serde::Deserialize<'de> for Members<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Members<'de>, D::Error> {
        deserializer.deserialize_map(MembersVisitor)
    }
}

struct MembersVisitor;

impl<'de> serde::de::Visitor<'de> for MembersVisitor {
    type Value = Members<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Members<'de>, M::Error> {
        let mut members = Vec::new();
        while let Some(Key(name)) = map.next_key()? {
            members.push((name, map.next_value()?));
        }
        Ok(Members(members))
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
        // A number out of f64's range is skipped, not read, as a parse that skips it does.
        assert_eq!(
            named_twice(br#"{"n":4e5333,"a":1,"a":2}"#).unwrap(),
            Some("a".into())
        );
        assert_eq!(named_twice(br#"[-1e999,{"n":1}]"#).unwrap(), None);
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
