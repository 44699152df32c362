//! JSON with every object's members in lexicographic order, the order herd has always sent
//! results in, written as it goes: the bytes of `serde_json::to_value` then `to_writer`
//! without the tree (with 4096 workers it took about 9 MB at once, memory herd's heap kept
//! afterwards, and most of a `status` reply's time).
//!
//! A struct is serialized three ways: once to learn its members' names, then once per member,
//! in name order, writing only that member; so nothing is buffered, and a member that is a
//! long list (a status's workers) is written element by element into the output. A list's
//! elements (small), a map's entries (few, in herd's results) and a struct variant's members
//! are written once each into a buffer, then copied out in order: with 4096 workers, a pass
//! per member of each worker made a status reply cost herd about 10 ms of CPU (5 ms so).

use std::borrow::Cow;
use std::ops::Range;

use serde::ser::{self, Serialize};
use serde_json::{Error, Value};

/// Appends `value` to `out` as JSON with sorted members.
pub(super) fn write<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), Error> {
    let mut names = Names::default();
    // A probe that fails is no struct (a list, a map, an enum's variant).
    let probed = value.serialize(Sorted {
        out: &mut Vec::new(),
        mode: Mode::Names(&mut names),
        scratch: None,
    });
    if probed.is_err() || !names.is_struct {
        return value.serialize(Sorted {
            out,
            mode: Mode::Write,
            scratch: None,
        });
    }
    let mut order = names.names;
    order.sort_unstable();
    out.push(b'{');
    let mut i = 0;
    while let Some(&name) = order.get(i) {
        let twins = order[i..].iter().take_while(|n| **n == name).count();
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, name)?;
        out.push(b':');
        value.serialize(Sorted {
            out: &mut *out,
            mode: Mode::Pick(name, twins - 1),
            scratch: None,
        })?;
        i += twins;
    }
    out.push(b'}');
    Ok(())
}

/// What a struct probe found.
#[derive(Default)]
struct Names {
    is_struct: bool,
    names: Vec<&'static str>,
}

/// What the serializer does with the value in hand.
enum Mode<'a> {
    /// Write it.
    Write,
    /// Write nothing; if it is a struct, note its members' names.
    Names(&'a mut Names),
    /// It is a struct: write only the value of its member of this name, passing over this
    /// many of that name first (of two of one name, the last counts, as in a JSON map).
    Pick(&'a str, usize),
}

/// The serializer: scalars as `serde_json` writes them (through a `Value` where that differs,
/// as `f32` does), compounds member by member.
struct Sorted<'a> {
    out: &'a mut Vec<u8>,
    mode: Mode<'a>,
    /// Where an object written in one pass buffers its members: a list's, lent to each of
    /// its elements in turn (so that thousands of them allocate once), or none (its own).
    scratch: Option<&'a mut Scratch>,
}

/// An object's members written so far, each a name and where its value is in `values`.
#[derive(Default)]
struct Scratch {
    buffered: Vec<(Cow<'static, str>, Range<usize>)>,
    values: Vec<u8>,
}

impl Scratch {
    /// Empty, its room kept.
    fn emptied(&mut self) -> &mut Scratch {
        self.buffered.clear();
        self.values.clear();
        self
    }
}

impl<'a> Sorted<'a> {
    /// Writes a scalar exactly as its `Value` is written.
    fn through_value<T: Serialize + ?Sized>(self, v: &T) -> Result<(), Error> {
        match self.mode {
            Mode::Write => serde_json::to_writer(self.out, &serde_json::to_value(v)?),
            _ => self.scalar(),
        }
    }

    /// Writes a scalar that `serde_json` writes as its `Value` would be.
    fn direct<T: Serialize + ?Sized>(self, v: &T) -> Result<(), Error> {
        match self.mode {
            Mode::Write => serde_json::to_writer(self.out, v),
            _ => self.scalar(),
        }
    }

    /// A scalar where a struct was expected: no struct for a probe, an error for a pick.
    fn scalar(self) -> Result<(), Error> {
        match self.mode {
            Mode::Pick(..) => Err(ser::Error::custom("a struct serialized as a scalar")),
            _ => Ok(()),
        }
    }

    /// Fails unless writing: a compound other than a struct is no struct.
    fn writing(&self) -> Result<(), Error> {
        match self.mode {
            Mode::Write => Ok(()),
            _ => Err(ser::Error::custom("not a struct")),
        }
    }

    /// `{"variant":` before a variant's content; its end closes it.
    fn open_variant(&mut self, variant: &str) -> Result<(), Error> {
        self.writing()?;
        self.out.push(b'{');
        serde_json::to_writer(&mut *self.out, variant)?;
        self.out.push(b':');
        Ok(())
    }
}

/// A sequence being written, and whether it closes a variant too.
struct Elements<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    variant: bool,
    scratch: Scratch,
}

impl<'a> Elements<'a> {
    fn open(out: &'a mut Vec<u8>, variant: bool) -> Elements<'a> {
        out.push(b'[');
        Elements {
            out,
            first: true,
            variant,
            scratch: Scratch::default(),
        }
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        // Written in one pass, its members buffered and sorted at its end: an element is
        // small, and a status's thousands of workers each written once per member (a pass
        // to pick each, below) took most of the reply's time.
        value.serialize(Sorted {
            out: self.out,
            mode: Mode::Write,
            scratch: Some(&mut self.scratch),
        })
    }

    fn close(self) -> Result<(), Error> {
        self.out.push(b']');
        if self.variant {
            self.out.push(b'}');
        }
        Ok(())
    }
}

/// An object's members: noted (a probe), one written (a pick), or each written into a buffer
/// of its own and sorted at the end (a map, a struct variant).
struct Members<'a> {
    out: &'a mut Vec<u8>,
    mode: Mode<'a>,
    /// The members written so far (see [`Sorted::scratch`]).
    own: Scratch,
    lent: Option<&'a mut Scratch>,
    key: Option<String>,
    picked: bool,
    variant: bool,
}

impl<'a> Members<'a> {
    fn open(sorted: Sorted<'a>, len: usize, variant: bool) -> Members<'a> {
        let mut mode = sorted.mode;
        if let Mode::Names(names) = &mut mode {
            names.is_struct = true;
            names.names.reserve(len);
        }
        Members {
            out: sorted.out,
            mode,
            own: Scratch::default(),
            lent: sorted.scratch.map(Scratch::emptied),
            key: None,
            picked: false,
            variant,
        }
    }

    fn member<T: Serialize + ?Sized>(
        &mut self,
        key: Cow<'static, str>,
        value: &T,
    ) -> Result<(), Error> {
        match &mut self.mode {
            Mode::Names(_) => Ok(()),
            Mode::Pick(name, skip) if *name == key => {
                if *skip > 0 {
                    *skip -= 1;
                    return Ok(());
                }
                self.picked = true;
                write(value, self.out)
            }
            Mode::Pick(..) => Ok(()),
            Mode::Write => {
                let scratch = self.lent.as_deref_mut().unwrap_or(&mut self.own);
                let start = scratch.values.len();
                write(value, &mut scratch.values)?;
                scratch.buffered.push((key, start..scratch.values.len()));
                Ok(())
            }
        }
    }

    fn note(&mut self, key: &'static str) {
        if let Mode::Names(names) = &mut self.mode {
            names.names.push(key);
        }
    }

    /// Ends the object: writes the buffered members in order.
    fn close(mut self) -> Result<(), Error> {
        match self.mode {
            Mode::Names(_) => Ok(()),
            Mode::Pick(..) if self.picked => Ok(()),
            Mode::Pick(..) => Err(ser::Error::custom("a struct member went missing")),
            Mode::Write => {
                let scratch = self.lent.unwrap_or(&mut self.own);
                scratch.buffered.sort_by(|a, b| a.0.cmp(&b.0));
                self.out.push(b'{');
                let mut members = scratch.buffered.iter().peekable();
                let mut first = true;
                while let Some((key, range)) = members.next() {
                    // Of two of one name, the last, as a JSON map keeps it.
                    if members.peek().is_some_and(|next| next.0 == *key) {
                        continue;
                    }
                    if !first {
                        self.out.push(b',');
                    }
                    first = false;
                    serde_json::to_writer(&mut *self.out, key)?;
                    self.out.push(b':');
                    self.out.extend_from_slice(&scratch.values[range.clone()]);
                }
                self.out.push(b'}');
                if self.variant {
                    self.out.push(b'}');
                }
                scratch.emptied();
                Ok(())
            }
        }
    }
}

/// A map key as JSON object keys take it: what `serde_json::to_value` makes of it (a string,
/// or a number or bool written as one).
fn key_text<K: Serialize + ?Sized>(key: &K) -> Result<String, Error> {
    struct OneEntry<'k, K: ?Sized>(&'k K);
    impl<K: Serialize + ?Sized> Serialize for OneEntry<'_, K> {
        fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use ser::SerializeMap;
            let mut map = s.serialize_map(Some(1))?;
            map.serialize_entry(self.0, &())?;
            map.end()
        }
    }
    match serde_json::to_value(OneEntry(key))? {
        Value::Object(map) => map
            .into_iter()
            .next()
            .map(|(k, _)| k)
            .ok_or_else(|| ser::Error::custom("a map key wrote nothing")),
        _ => Err(ser::Error::custom("a map key is not an object key")),
    }
}

impl<'a> ser::Serializer for Sorted<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Elements<'a>;
    type SerializeTuple = Elements<'a>;
    type SerializeTupleStruct = Elements<'a>;
    type SerializeTupleVariant = Elements<'a>;
    type SerializeMap = Members<'a>;
    type SerializeStruct = Members<'a>;
    type SerializeStructVariant = Members<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.direct(&v)
    }
    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.direct(&v)
    }
    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.direct(&v)
    }
    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.direct(&v)
    }
    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        self.direct(&v)
    }
    fn serialize_i128(self, v: i128) -> Result<(), Error> {
        self.through_value(&v)
    }
    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.direct(&v)
    }
    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.direct(&v)
    }
    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.direct(&v)
    }
    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        self.direct(&v)
    }
    fn serialize_u128(self, v: u128) -> Result<(), Error> {
        self.through_value(&v)
    }
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        self.through_value(&v)
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        self.through_value(&v)
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.direct(&v)
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        self.direct(v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        self.through_value(v)
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.direct(&())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.direct(&())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        self.direct(&())
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.direct(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        mut self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.open_variant(variant)?;
        write(value, self.out)?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Elements<'a>, Error> {
        self.writing()?;
        Ok(Elements::open(self.out, false))
    }
    fn serialize_tuple(self, _len: usize) -> Result<Elements<'a>, Error> {
        self.writing()?;
        Ok(Elements::open(self.out, false))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Elements<'a>, Error> {
        self.writing()?;
        Ok(Elements::open(self.out, false))
    }
    fn serialize_tuple_variant(
        mut self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Elements<'a>, Error> {
        self.open_variant(variant)?;
        Ok(Elements::open(self.out, true))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Members<'a>, Error> {
        self.writing()?;
        Ok(Members::open(self, 0, false))
    }
    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<Members<'a>, Error> {
        Ok(Members::open(self, len, false))
    }
    fn serialize_struct_variant(
        mut self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Members<'a>, Error> {
        self.open_variant(variant)?;
        Ok(Members::open(self, len, true))
    }
}

mod compound;
#[cfg(test)]
mod tests;
