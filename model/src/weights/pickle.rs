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

/// Run one pickle and return its value.
fn unpickle(r: &mut Reader) -> Result<Value, String> {
    let mut stack: Vec<Value> = Vec::new();
    let mut memo: BTreeMap<u32, Value> = BTreeMap::new();
    let pop = |stack: &mut Vec<Value>| {
        stack
            .pop()
            .ok_or_else(|| "pickle stack underflow".to_string())
    };
    let pop_mark = |stack: &mut Vec<Value>| -> Result<Vec<Value>, String> {
        let at = stack
            .iter()
            .rposition(|v| *v == Value::Mark)
            .ok_or("pickle MARK missing")?;
        let items = stack.split_off(at + 1);
        stack.pop();
        Ok(items)
    };
    loop {
        let op = r.u8()?;
        match op {
            0x80 => {
                r.u8()?; // PROTO
            }
            b'.' => return pop(&mut stack),
            b'(' => stack.push(Value::Mark),
            b'N' => stack.push(Value::None),
            0x88 => stack.push(Value::Bool(true)),
            0x89 => stack.push(Value::Bool(false)),
            b'J' => stack.push(Value::Int(r.u32()? as i32 as i64)),
            b'K' => stack.push(Value::Int(r.u8()? as i64)),
            b'M' => stack.push(Value::Int(r.u16()? as i64)),
            0x8a => {
                let n = r.u8()? as usize;
                let bytes = r.take(n)?;
                if n > 8 {
                    // Only the magic number is this long; its value does not matter.
                    stack.push(Value::Int(i64::MAX));
                } else {
                    let mut buf = [if bytes.last().is_some_and(|b| b & 0x80 != 0) {
                        0xff
                    } else {
                        0
                    }; 8];
                    buf[..n].copy_from_slice(bytes);
                    stack.push(Value::Int(i64::from_le_bytes(buf)));
                }
            }
            b'G' => stack.push(Value::Float(f64::from_be_bytes(
                r.take(8)?.try_into().expect("8 bytes"),
            ))),
            b'X' => {
                let n = r.u32()? as usize;
                stack.push(Value::Str(r.string(n)?));
            }
            0x8c => {
                let n = r.u8()? as usize;
                stack.push(Value::Str(r.string(n)?));
            }
            b'U' => {
                let n = r.u8()? as usize;
                stack.push(Value::Str(String::from_utf8_lossy(r.take(n)?).to_string()));
            }
            b'T' => {
                let n = r.u32()? as usize;
                stack.push(Value::Str(String::from_utf8_lossy(r.take(n)?).to_string()));
            }
            b'c' => {
                let module = r.line()?;
                let name = r.line()?;
                stack.push(Value::Global(module, name));
            }
            b')' => stack.push(Value::Tuple(Vec::new())),
            b'}' => stack.push(Value::Dict(Vec::new())),
            b']' => stack.push(Value::List(Vec::new())),
            b't' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Value::Tuple(items));
            }
            b'l' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Value::List(items));
            }
            b'd' => {
                let items = pop_mark(&mut stack)?;
                let pairs = items
                    .chunks_exact(2)
                    .map(|p| (p[0].clone(), p[1].clone()))
                    .collect();
                stack.push(Value::Dict(pairs));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if stack.len() < n {
                    return Err("pickle stack underflow".into());
                }
                let items = stack.split_off(stack.len() - n);
                stack.push(Value::Tuple(items));
            }
            b'q' => {
                let key = r.u8()? as u32;
                memo.insert(
                    key,
                    stack.last().cloned().ok_or("BINPUT on an empty stack")?,
                );
            }
            b'r' => {
                let key = r.u32()?;
                memo.insert(
                    key,
                    stack
                        .last()
                        .cloned()
                        .ok_or("LONG_BINPUT on an empty stack")?,
                );
            }
            0x94 => {
                let key = memo.len() as u32;
                memo.insert(
                    key,
                    stack.last().cloned().ok_or("MEMOIZE on an empty stack")?,
                );
            }
            b'h' => {
                let key = r.u8()? as u32;
                stack.push(
                    memo.get(&key)
                        .cloned()
                        .ok_or("BINGET of an unknown memo entry")?,
                );
            }
            b'j' => {
                let key = r.u32()?;
                stack.push(
                    memo.get(&key)
                        .cloned()
                        .ok_or("LONG_BINGET of an unknown memo entry")?,
                );
            }
            b'R' => {
                let args = pop(&mut stack)?;
                let callable = pop(&mut stack)?;
                stack.push(reduce(callable, args)?);
            }
            b'b' => {
                // BUILD: object state (e.g. a state dict's `_metadata`); not needed.
                pop(&mut stack)?;
            }
            b's' | b'u' => {
                let items = if op == b's' {
                    let value = pop(&mut stack)?;
                    let key = pop(&mut stack)?;
                    vec![key, value]
                } else {
                    pop_mark(&mut stack)?
                };
                match stack.last_mut() {
                    Some(Value::Dict(pairs)) => {
                        pairs.extend(items.chunks_exact(2).map(|p| (p[0].clone(), p[1].clone())))
                    }
                    _ => return Err("SETITEM(S) on something that is not a dict".into()),
                }
            }
            b'a' | b'e' => {
                let items = if op == b'a' {
                    vec![pop(&mut stack)?]
                } else {
                    pop_mark(&mut stack)?
                };
                match stack.last_mut() {
                    Some(Value::List(list)) => list.extend(items),
                    _ => return Err("APPEND(S) on something that is not a list".into()),
                }
            }
            b'Q' => {
                // BINPERSID: ('storage', storage type, key, location, size[, view metadata]).
                let pid = pop(&mut stack)?;
                let Value::Tuple(items) = pid else {
                    return Err("persistent id is not a tuple".into());
                };
                match items.as_slice() {
                    [Value::Str(tag), Value::Global(_, kind), Value::Str(key), _, size, ..]
                        if tag == "storage" =>
                    {
                        stack.push(Value::Storage {
                            key: key.clone(),
                            kind: kind.clone(),
                            size: as_usize(size)?,
                        })
                    }
                    _ => return Err(format!("unknown persistent id {items:?}")),
                }
            }
            other => return Err(format!("unsupported pickle opcode 0x{other:02x}")),
        }
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
