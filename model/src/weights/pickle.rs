//! A reader for PyTorch's legacy (pre-1.6) `torch.save` format that runs nothing from the file.
//!
//! The format is five pickles followed by raw storages:
//! magic number, protocol version, system info, the saved object (here a state dict whose
//! tensors refer to storages by persistent id), the list of storage keys; then for each key
//! an 8-byte element count and the storage's bytes.
//!
//! The pickle machine below knows the opcodes protocol 2 uses for such files. It builds plain
//! values; the only callables it gives meaning to are `collections.OrderedDict` and
//! `torch._utils._rebuild_tensor_v2` (and `_rebuild_tensor`). Any other global is refused, so a
//! file cannot make it do anything but build a dict of tensors. Every storage must be present
//! in full: a truncated file is an error, never zeros.

use std::collections::BTreeMap;

use burn::tensor::TensorData;

/// The legacy format's magic number, pickled as the file's first object.
const MAGIC: &[u8] = &[
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19,
];

/// Whether `bytes` start like a legacy `torch.save` file.
pub fn is_legacy_torch(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

#[derive(Clone, Debug, PartialEq)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    Storage {
        key: String,
        kind: String,
        size: usize,
    },
    Tensor(TensorRef),
    Mark,
}

#[derive(Clone, Debug, PartialEq)]
struct TensorRef {
    storage: String,
    kind: String,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| {
                format!(
                    "the file ends early (at byte {} of {}): truncated?",
                    self.bytes.len(),
                    self.pos.saturating_add(n)
                )
            })?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn line(&mut self) -> Result<String, String> {
        let rest = &self.bytes[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("unterminated line in pickle")?;
        let text = String::from_utf8_lossy(&rest[..end]).to_string();
        self.pos += end + 1;
        Ok(text)
    }
    fn string(&mut self, n: usize) -> Result<String, String> {
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| "invalid UTF-8 string in pickle".to_string())
    }
}

fn as_usize(v: &Value) -> Result<usize, String> {
    match v {
        Value::Int(i) if *i >= 0 => Ok(*i as usize),
        other => Err(format!("expected a non-negative integer, found {other:?}")),
    }
}

fn usize_tuple(v: &Value) -> Result<Vec<usize>, String> {
    match v {
        Value::Tuple(items) | Value::List(items) => items.iter().map(as_usize).collect(),
        other => Err(format!("expected a tuple of integers, found {other:?}")),
    }
}

/// Apply a callable; only the few that build a state dict are known.
fn reduce(callable: Value, args: Value) -> Result<Value, String> {
    let Value::Global(module, name) = &callable else {
        return Err(format!("cannot call {callable:?}"));
    };
    let Value::Tuple(args) = args else {
        return Err("call arguments are not a tuple".into());
    };
    match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") => Ok(Value::Dict(Vec::new())),
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            let [storage, offset, shape, stride, ..] = args.as_slice() else {
                return Err("a tensor with too few arguments".into());
            };
            let Value::Storage { key, kind, .. } = storage else {
                return Err("a tensor without a storage".into());
            };
            Ok(Value::Tensor(TensorRef {
                storage: key.clone(),
                kind: kind.clone(),
                offset: as_usize(offset)?,
                shape: usize_tuple(shape)?,
                stride: usize_tuple(stride)?,
            }))
        }
        _ => Err(format!(
            "the checkpoint calls {module}.{name}, which a state dict of tensors never needs; refusing it"
        )),
    }
}

/// The pickle opcodes the reader runs (protocol 2, as `torch.save` writes legacy files, and
/// protocol 4's `MEMOIZE`), by their names in Python's `pickletools`.
mod op {
    pub const PROTO: u8 = 0x80;
    pub const STOP: u8 = b'.';
    pub const MARK: u8 = b'(';
    pub const NONE: u8 = b'N';
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const BININT2: u8 = b'M';
    pub const LONG1: u8 = 0x8a;
    pub const BINFLOAT: u8 = b'G';
    pub const BINUNICODE: u8 = b'X';
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const SHORT_BINSTRING: u8 = b'U';
    pub const BINSTRING: u8 = b'T';
    pub const GLOBAL: u8 = b'c';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const EMPTY_DICT: u8 = b'}';
    pub const EMPTY_LIST: u8 = b']';
    pub const TUPLE: u8 = b't';
    pub const LIST: u8 = b'l';
    pub const DICT: u8 = b'd';
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE3: u8 = 0x87;
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const MEMOIZE: u8 = 0x94;
    pub const BINGET: u8 = b'h';
    pub const LONG_BINGET: u8 = b'j';
    pub const REDUCE: u8 = b'R';
    pub const BUILD: u8 = b'b';
    pub const SETITEM: u8 = b's';
    pub const SETITEMS: u8 = b'u';
    pub const APPEND: u8 = b'a';
    pub const APPENDS: u8 = b'e';
    pub const BINPERSID: u8 = b'Q';
}

/// Run one pickle and return its value.
fn unpickle(r: &mut Reader) -> Result<Value, String> {
    let mut machine = Machine::default();
    loop {
        match r.u8()? {
            op::STOP => return machine.pop(),
            code => match literal(code, r)? {
                Some(value) => machine.stack.push(value),
                None => machine.apply(code, r)?,
            },
        }
    }
}

/// The value that an opcode pushing a constant, a number, a string, a global's name or an
/// empty container pushes, read from the stream; `None` for every other opcode.
fn literal(code: u8, r: &mut Reader) -> Result<Option<Value>, String> {
    Ok(Some(match code {
        op::MARK => Value::Mark,
        op::NONE => Value::None,
        op::NEWTRUE => Value::Bool(true),
        op::NEWFALSE => Value::Bool(false),
        op::BININT => Value::Int(r.u32()? as i32 as i64),
        op::BININT1 => Value::Int(r.u8()? as i64),
        op::BININT2 => Value::Int(r.u16()? as i64),
        op::LONG1 => long1(r)?,
        op::BINFLOAT => Value::Float(f64::from_be_bytes(r.take(8)?.try_into().expect("8 bytes"))),
        op::BINUNICODE => {
            let n = r.u32()? as usize;
            Value::Str(r.string(n)?)
        }
        op::SHORT_BINUNICODE => {
            let n = r.u8()? as usize;
            Value::Str(r.string(n)?)
        }
        op::SHORT_BINSTRING => {
            let n = r.u8()? as usize;
            Value::Str(String::from_utf8_lossy(r.take(n)?).to_string())
        }
        op::BINSTRING => {
            let n = r.u32()? as usize;
            Value::Str(String::from_utf8_lossy(r.take(n)?).to_string())
        }
        op::GLOBAL => {
            let module = r.line()?;
            let name = r.line()?;
            Value::Global(module, name)
        }
        op::EMPTY_TUPLE => Value::Tuple(Vec::new()),
        op::EMPTY_DICT => Value::Dict(Vec::new()),
        op::EMPTY_LIST => Value::List(Vec::new()),
        _ => return Ok(None),
    }))
}

/// `LONG1`'s integer: a length byte, then that many little-endian two's-complement bytes.
fn long1(r: &mut Reader) -> Result<Value, String> {
    let n = r.u8()? as usize;
    let bytes = r.take(n)?;
    if n > 8 {
        // Only the magic number is this long; its value does not matter.
        return Ok(Value::Int(i64::MAX));
    }
    let sign = if bytes.last().is_some_and(|b| b & 0x80 != 0) {
        0xff
    } else {
        0
    };
    let mut buf = [sign; 8];
    buf[..n].copy_from_slice(bytes);
    Ok(Value::Int(i64::from_le_bytes(buf)))
}

/// The pickle machine's stack and memo.
#[derive(Default)]
struct Machine {
    stack: Vec<Value>,
    memo: BTreeMap<u32, Value>,
}

impl Machine {
    fn pop(&mut self) -> Result<Value, String> {
        self.stack
            .pop()
            .ok_or_else(|| "pickle stack underflow".to_string())
    }

    /// The values above the topmost mark, the mark removed.
    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let at = self
            .stack
            .iter()
            .rposition(|v| *v == Value::Mark)
            .ok_or("pickle MARK missing")?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }

    /// Keep the top of the stack in the memo under `key` (`what`: the opcode, for errors).
    fn memoize(&mut self, key: u32, what: &str) -> Result<(), String> {
        let top = self.stack.last().cloned();
        let top = top.ok_or_else(|| format!("{what} on an empty stack"))?;
        self.memo.insert(key, top);
        Ok(())
    }

    /// Push the memo's value under `key` (`what`: the opcode, for errors).
    fn recall(&mut self, key: u32, what: &str) -> Result<(), String> {
        let value = self.memo.get(&key).cloned();
        let value = value.ok_or_else(|| format!("{what} of an unknown memo entry"))?;
        self.stack.push(value);
        Ok(())
    }

    /// Run an opcode that works on the stack or the memo (every one [`literal`] does not
    /// take, but `STOP`).
    fn apply(&mut self, code: u8, r: &mut Reader) -> Result<(), String> {
        match code {
            op::PROTO => {
                r.u8()?;
            }
            op::TUPLE => {
                let items = self.pop_mark()?;
                self.stack.push(Value::Tuple(items));
            }
            op::LIST => {
                let items = self.pop_mark()?;
                self.stack.push(Value::List(items));
            }
            op::DICT => {
                let items = self.pop_mark()?;
                self.stack.push(Value::Dict(pairs(&items)));
            }
            op::TUPLE1..=op::TUPLE3 => {
                let n = (code - op::TUPLE1 + 1) as usize;
                if self.stack.len() < n {
                    return Err("pickle stack underflow".into());
                }
                let items = self.stack.split_off(self.stack.len() - n);
                self.stack.push(Value::Tuple(items));
            }
            op::BINPUT => self.memoize(r.u8()? as u32, "BINPUT")?,
            op::LONG_BINPUT => self.memoize(r.u32()?, "LONG_BINPUT")?,
            op::MEMOIZE => self.memoize(self.memo.len() as u32, "MEMOIZE")?,
            op::BINGET => self.recall(r.u8()? as u32, "BINGET")?,
            op::LONG_BINGET => self.recall(r.u32()?, "LONG_BINGET")?,
            op::REDUCE => {
                let args = self.pop()?;
                let callable = self.pop()?;
                self.stack.push(reduce(callable, args)?);
            }
            op::BUILD => {
                // Object state (e.g. a state dict's `_metadata`): not needed.
                self.pop()?;
            }
            op::SETITEM | op::SETITEMS => self.set_items(code)?,
            op::APPEND | op::APPENDS => self.append(code)?,
            op::BINPERSID => {
                let pid = self.pop()?;
                self.stack.push(persistent(pid)?);
            }
            other => return Err(format!("unsupported pickle opcode 0x{other:02x}")),
        }
        Ok(())
    }

    /// `SETITEM` (one key and value) or `SETITEMS` (pairs above a mark) into the dict below.
    fn set_items(&mut self, code: u8) -> Result<(), String> {
        let items = if code == op::SETITEM {
            let value = self.pop()?;
            let key = self.pop()?;
            vec![key, value]
        } else {
            self.pop_mark()?
        };
        match self.stack.last_mut() {
            Some(Value::Dict(dict)) => dict.extend(pairs(&items)),
            _ => return Err("SETITEM(S) on something that is not a dict".into()),
        }
        Ok(())
    }

    /// `APPEND` (one value) or `APPENDS` (the values above a mark) onto the list below.
    fn append(&mut self, code: u8) -> Result<(), String> {
        let items = if code == op::APPEND {
            vec![self.pop()?]
        } else {
            self.pop_mark()?
        };
        match self.stack.last_mut() {
            Some(Value::List(list)) => list.extend(items),
            _ => return Err("APPEND(S) on something that is not a list".into()),
        }
        Ok(())
    }
}

/// Alternate keys and values as pairs.
fn pairs(items: &[Value]) -> Vec<(Value, Value)> {
    items
        .chunks_exact(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect()
}

/// A `BINPERSID`'s storage: `('storage', storage type, key, location, size[, view metadata])`.
fn persistent(pid: Value) -> Result<Value, String> {
    let Value::Tuple(items) = pid else {
        return Err("persistent id is not a tuple".into());
    };
    match items.as_slice() {
        [Value::Str(tag), Value::Global(_, kind), Value::Str(key), _, size, ..]
            if tag == "storage" =>
        {
            Ok(Value::Storage {
                key: key.clone(),
                kind: kind.clone(),
                size: as_usize(size)?,
            })
        }
        _ => Err(format!("unknown persistent id {items:?}")),
    }
}

fn element_size(kind: &str) -> Result<usize, String> {
    match kind {
        "FloatStorage" => Ok(4),
        "DoubleStorage" => Ok(8),
        "HalfStorage" => Ok(2),
        other => Err(format!(
            "tensors of {other} are not weights we can use (float, double or half expected)"
        )),
    }
}

fn to_f32(kind: &str, bytes: &[u8]) -> Vec<f32> {
    match kind {
        "DoubleStorage" => bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
            .collect(),
        "HalfStorage" => bytes
            .chunks_exact(2)
            .map(|c| burn::tensor::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect(),
    }
}

/// Why a legacy checkpoint could not be read: what was wrong, as the reader met it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PickleError(String);

/// Read a legacy `torch.save` state dict into float32 tensors by name.
pub fn read_legacy_state_dict(bytes: &[u8]) -> Result<BTreeMap<String, TensorData>, PickleError> {
    read_state_dict(bytes).map_err(PickleError)
}

fn read_state_dict(bytes: &[u8]) -> Result<BTreeMap<String, TensorData>, String> {
    if !is_legacy_torch(bytes) {
        return Err("not a legacy PyTorch checkpoint (magic number missing)".into());
    }
    let mut r = Reader { bytes, pos: 0 };
    for _ in 0..3 {
        unpickle(&mut r)?; // magic number, protocol version, system info
    }
    let state = unpickle(&mut r)?;
    let Value::List(keys) = unpickle(&mut r)? else {
        return Err("the storage key list is missing".into());
    };
    let Value::Dict(entries) = state else {
        return Err("the checkpoint holds no state dict".into());
    };
    let mut tensors: BTreeMap<String, TensorRef> = BTreeMap::new();
    for (key, value) in entries {
        match (key, value) {
            (Value::Str(name), Value::Tensor(t)) => {
                tensors.insert(name, t);
            }
            (Value::Str(name), _) => return Err(format!("entry {name} is not a tensor")),
            _ => return Err("a state dict key is not a string".into()),
        }
    }
    // The storages, in the order of the key list, each complete.
    let mut storages: BTreeMap<String, (&str, &[u8])> = BTreeMap::new();
    let kinds: BTreeMap<&str, &str> = tensors
        .values()
        .map(|t| (t.storage.as_str(), t.kind.as_str()))
        .collect();
    for key in keys {
        let Value::Str(key) = key else {
            return Err("a storage key is not a string".into());
        };
        let kind = *kinds
            .get(key.as_str())
            .ok_or_else(|| format!("storage {key} belongs to no tensor"))?;
        let count = r.u64()? as usize;
        let size = count
            .checked_mul(element_size(kind)?)
            .ok_or("storage size overflows")?;
        let data = r.take(size).map_err(|e| format!("storage {key}: {e}"))?;
        storages.insert(key, (kind, data));
    }
    tensors
        .iter()
        .map(|(name, t)| {
            let (kind, data) = storages
                .get(&t.storage)
                .ok_or_else(|| format!("{name}: its storage is missing from the file"))?;
            let numel: usize = t.shape.iter().product();
            let mut contiguous = vec![1usize; t.shape.len()];
            for d in (0..t.shape.len().saturating_sub(1)).rev() {
                contiguous[d] = contiguous[d + 1] * t.shape[d + 1];
            }
            if numel > 1 && t.stride != contiguous {
                return Err(format!("{name}: non-contiguous tensors are not supported"));
            }
            let elem = element_size(kind)?;
            let start = t.offset * elem;
            let bytes = data
                .get(start..start + numel * elem)
                .ok_or_else(|| format!("{name}: reaches past the end of its storage"))?;
            Ok((
                name.clone(),
                TensorData::new(to_f32(kind, bytes), t.shape.clone()),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The three leading pickles: magic number, protocol version 1001, system info `{}`.
    fn header() -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.push(b'.');
        b.extend_from_slice(&[0x80, 0x02, b'M', 0xe9, 0x03, b'.']);
        b.extend_from_slice(&[0x80, 0x02, b'}', b'.']);
        b
    }

    /// A hand-assembled legacy checkpoint holding `{"w": tensor([[1., 2.], [3., 4.]])}`.
    fn tiny_checkpoint() -> Vec<u8> {
        let mut b = header();
        let mut p = vec![0x80, 0x02];
        p.extend_from_slice(b"ccollections\nOrderedDict\n)R(");
        p.extend_from_slice(&[b'X', 1, 0, 0, 0, b'w']);
        p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n((");
        p.extend_from_slice(&[b'X', 7, 0, 0, 0]);
        p.extend_from_slice(b"storage");
        p.extend_from_slice(b"ctorch\nFloatStorage\n");
        p.extend_from_slice(&[b'X', 1, 0, 0, 0, b'0', b'X', 3, 0, 0, 0]);
        p.extend_from_slice(b"cpu");
        p.extend_from_slice(&[b'K', 4, b'N', b't', b'Q']); // persistent id -> storage
        p.extend_from_slice(&[
            b'K', 0, b'K', 2, b'K', 2, 0x86, b'K', 2, b'K', 1, 0x86, 0x89,
        ]);
        p.extend_from_slice(b"ccollections\nOrderedDict\n)R");
        p.extend_from_slice(b"tRu.");
        b.extend_from_slice(&p);
        b.extend_from_slice(&[0x80, 0x02, b']', b'(', b'X', 1, 0, 0, 0, b'0', b'e', b'.']);
        b.extend_from_slice(&4u64.to_le_bytes());
        for v in [1f32, 2., 3., 4.] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b
    }

    #[test]
    fn reads_a_hand_assembled_checkpoint() {
        let tensors = read_legacy_state_dict(&tiny_checkpoint()).unwrap();
        let w = &tensors["w"];
        assert_eq!(w.shape.to_vec(), vec![2, 2]);
        assert_eq!(w.as_slice::<f32>().unwrap(), &[1., 2., 3., 4.]);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = tiny_checkpoint();
        for keep in 0..bytes.len() {
            assert!(
                read_legacy_state_dict(&bytes[..keep]).is_err(),
                "cut to {keep} bytes"
            );
        }
    }

    #[test]
    fn unknown_callables_are_refused() {
        let mut bytes = header();
        bytes.extend_from_slice(b"\x80\x02cos\nsystem\n(X\x04\x00\x00\x00echotR.");
        let err = read_legacy_state_dict(&bytes).unwrap_err().to_string();
        assert!(err.contains("os.system"), "{err}");
    }
}
