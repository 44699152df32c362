use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::write;
use crate::control::protocol::Response;
use crate::supervisor::status::Status;

/// What `write` must match: the value's tree, written.
fn through_tree<T: Serialize>(value: &T) -> String {
    serde_json::to_string(&serde_json::to_value(value).unwrap()).unwrap()
}

fn sorted<T: Serialize>(value: &T) -> String {
    let mut out = Vec::new();
    write(value, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[derive(Serialize)]
enum Kind {
    Unit,
    Newtype(Inner),
    Tuple(u8, f32),
    Struct { zeta: u8, alpha: Option<Inner> },
}

#[derive(Serialize)]
struct Inner {
    z: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped: Option<u8>,
    a: f64,
    m: char,
}

#[derive(Serialize)]
struct Wrapper(Inner);

#[derive(Serialize)]
struct Every {
    zz: Vec<Inner>,
    kinds: Vec<Kind>,
    counts: HashMap<u16, i64>,
    names: BTreeMap<String, Option<bool>>,
    tuple: (i8, u128, (), String),
    wrapped: Wrapper,
    bytes: serde_bytes_like::Bytes,
    float: f32,
    nan: f64,
    #[serde(flatten)]
    flat: BTreeMap<&'static str, u8>,
}

/// `serialize_bytes`, which derives never call (a `Vec<u8>` is a sequence).
mod serde_bytes_like {
    pub struct Bytes(pub Vec<u8>);
    impl serde::Serialize for Bytes {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(&self.0)
        }
    }
}

fn inner(z: &'static str) -> Inner {
    Inner {
        z,
        skipped: None,
        a: 0.1,
        m: 'é',
    }
}

#[test]
fn every_part_of_the_data_model_is_written_as_its_tree_is() {
    let every = Every {
        zz: vec![inner("x\"y"), inner("\u{1}")],
        kinds: vec![
            Kind::Unit,
            Kind::Newtype(inner("n")),
            Kind::Tuple(1, 0.1),
            Kind::Struct {
                zeta: 2,
                alpha: Some(inner("s")),
            },
        ],
        counts: (0..20).map(|i| (i, -i64::from(i))).collect(),
        names: [("b".to_string(), None), ("a".to_string(), Some(true))].into(),
        tuple: (-1, u128::from(u64::MAX), (), "t".to_string()),
        wrapped: Wrapper(inner("w")),
        bytes: serde_bytes_like::Bytes(vec![0, 255]),
        float: 0.1,
        nan: f64::NAN,
        flat: [("zz_flat", 1), ("aa_flat", 2)].into(),
    };
    assert_eq!(sorted(&every), through_tree(&every));
    for scalar in [
        through_tree(&1u8),
        through_tree(&"s"),
        through_tree(&None::<u8>),
    ] {
        let value: serde_json::Value = serde_json::from_str(&scalar).unwrap();
        assert_eq!(sorted(&value), scalar);
    }
}

#[test]
fn of_two_members_of_one_name_the_last_is_written_as_in_a_map() {
    #[derive(Serialize)]
    struct Twice {
        b: u8,
        #[serde(flatten)]
        again: BTreeMap<&'static str, u8>,
    }
    let twice = Twice {
        b: 1,
        again: [("b", 2), ("a", 3)].into(),
    };
    assert_eq!(sorted(&twice), through_tree(&twice));
    assert_eq!(sorted(&twice), r#"{"a":3,"b":2}"#);
    /// Two fields of one name, which no derive writes.
    struct Doubled;
    impl Serialize for Doubled {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeStruct;
            let mut st = s.serialize_struct("Doubled", 3)?;
            st.serialize_field("b", &1)?;
            st.serialize_field("a", &2)?;
            st.serialize_field("b", &3)?;
            st.end()
        }
    }
    assert_eq!(sorted(&Doubled), through_tree(&Doubled));
    assert_eq!(sorted(&Doubled), r#"{"a":2,"b":3}"#);
    // The same as elements of a list, which are written in one pass each.
    let list = (vec![Doubled, Doubled], vec![twice]);
    assert_eq!(sorted(&list), through_tree(&list));
    assert_eq!(
        sorted(&list),
        r#"[[{"a":2,"b":3},{"a":2,"b":3}],[{"a":3,"b":2}]]"#
    );
}

/// A status like herd's, `workers` workers.
fn status(workers: usize) -> Status {
    let worker = |slot: usize| {
        serde_json::json!({
            "slot": slot, "pid": 100 + slot, "generation": 1, "state": "ready",
            "available": true, "stopping_reason": null, "uptime_ms": 5, "restarts": 0,
            "last_exit": "exit code 1", "status": "serving \"x\"", "memory_bytes": 4096,
            "cpu_percent": 0.5, "recycling": null
        })
    };
    serde_json::from_value(serde_json::json!({
        "pid": 1, "name": "web", "version": "0", "uptime_ms": 1, "generation": 1,
        "upgrading_to": null, "stopping": false, "desired": workers, "running": workers,
        "ready": workers, "workers": (0..workers).map(worker).collect::<Vec<_>>(),
        "waiting": [{"slot": 3, "restart_in_ms": 100, "restarts": 2, "last_exit": null}],
        "sockets": [], "attached": [], "memory_kind": "pss"
    }))
    .unwrap()
}

#[test]
fn a_reply_line_is_its_serialize_byte_for_byte() {
    let ok = Response::ok(status(3));
    let mut generic = serde_json::to_vec(&ok).unwrap();
    generic.push(b'\n');
    assert_eq!(
        String::from_utf8(ok.to_line()).unwrap(),
        String::from_utf8(generic).unwrap()
    );
    let error: Response = Response::error(
        crate::control::protocol::ErrorCode::Busy,
        "an upgrade is in progress",
    );
    let mut generic = serde_json::to_vec(&error).unwrap();
    generic.push(b'\n');
    assert_eq!(error.to_line(), generic);
}
