//! Replay tokens: everything that decides one checked state — the configuration that shapes
//! the workload, the workload's number, and each epoch's cut (crash point, crash state, crashes
//! of recovery) — as LEB128 numbers with an FNV-1a checksum, in Crockford base32 behind `txf1-`.

#[cfg(test)]
use crate::config::LogBug;
use crate::config::{Bug, FuzzConfig};
use crate::engine::{Cut, Path};
use crate::error::FuzzError;
use crate::stack::{CrashAt, Interrupt, StateChoice};

const PREFIX: &str = "txf1-";
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// Bounds on what a token may claim, so that a damaged one cannot make the replayer allocate
/// or loop without limit.
const MAX_CUTS: u64 = 8;
const MAX_RECOVERY_CRASHES: u64 = 64;

/// What a token holds.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Token {
    pub layer: String,
    pub config: FuzzConfig,
    pub path: Path,
}

fn fnv32(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for &byte in bytes {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

fn put(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn get(&mut self) -> Result<u64, FuzzError> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.bytes.split_first().ok_or_else(|| bad("truncated"))?;
            self.bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(bad("a number longer than 64 bits"))
    }

    fn get_bounded(&mut self, max: u64, what: &str) -> Result<u64, FuzzError> {
        let value = self.get()?;
        if value > max {
            return Err(bad(&format!("{what} {value} above {max}")));
        }
        Ok(value)
    }
}

fn bad(reason: &str) -> FuzzError {
    FuzzError::BadToken {
        reason: reason.into(),
    }
}

fn put_crash(out: &mut Vec<u8>, crash: Option<CrashAt>) {
    match crash {
        None => put(out, 0),
        Some(at) => {
            put(out, at.disk as u64 + 1);
            put(out, at.op);
        }
    }
}

fn get_crash(reader: &mut Reader<'_>) -> Result<Option<CrashAt>, FuzzError> {
    match reader.get_bounded(2, "disk")? {
        0 => Ok(None),
        disk => Ok(Some(CrashAt {
            disk: disk as usize - 1,
            op: reader.get()?,
        })),
    }
}

/// An interrupt of recovery: `disk + 1`, plus 2 for a fail-stop, then the operation.
fn put_interrupt(out: &mut Vec<u8>, interrupt: Interrupt) {
    put(
        out,
        interrupt.at.disk as u64 + 1 + 2 * u64::from(interrupt.fail_stop),
    );
    put(out, interrupt.at.op);
}

fn get_interrupt(reader: &mut Reader<'_>) -> Result<Interrupt, FuzzError> {
    let code = reader.get_bounded(4, "recovery interrupt")?;
    if code == 0 {
        return Err(bad("a recovery interrupt without a disk"));
    }
    let at = CrashAt {
        disk: ((code - 1) % 2) as usize,
        op: reader.get()?,
    };
    Ok(Interrupt {
        at,
        fail_stop: code > 2,
    })
}

fn put_state(out: &mut Vec<u8>, state: StateChoice) {
    match state {
        StateChoice::Nth(index) => {
            put(out, 0);
            put(out, index);
        }
        StateChoice::Random(seed) => {
            put(out, 1);
            put(out, seed);
        }
    }
}

fn get_state(reader: &mut Reader<'_>) -> Result<StateChoice, FuzzError> {
    match reader.get_bounded(1, "state kind")? {
        0 => Ok(StateChoice::Nth(reader.get()?)),
        _ => Ok(StateChoice::Random(reader.get()?)),
    }
}

fn encode_base32(bytes: &[u8]) -> String {
    let mut text = String::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            text.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        text.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    text
}

fn decode_base32(text: &str) -> Result<Vec<u8>, FuzzError> {
    let mut bytes = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for ch in text.chars() {
        let lower = ch.to_ascii_lowercase() as u8;
        let value = ALPHABET
            .iter()
            .position(|&c| c == lower)
            .ok_or_else(|| bad(&format!("character {ch:?}")))?;
        buffer = (buffer << 5) | value as u32;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            bytes.push((buffer >> bits) as u8);
        }
        buffer &= (1 << bits) - 1;
    }
    Ok(bytes)
}

impl Token {
    pub fn encode(&self) -> String {
        let c = &self.config;
        let mut out = Vec::new();
        put(&mut out, u64::from(fnv32(self.layer.as_bytes())));
        put(&mut out, c.seed);
        put(
            &mut out,
            u64::from(c.replicated)
                | u64::from(c.torn) << 1
                | u64::from(c.misdirect) << 2
                | u64::from(c.bit_rot) << 3
                | u64::from(c.lost_writes) << 4
                | u64::from(c.sync_failures) << 5,
        );
        put(&mut out, c.bug.map_or(0, Bug::code));
        for value in [
            u64::from(c.workload_len),
            u64::from(c.epochs),
            c.disk_blocks,
            c.log_blocks,
        ] {
            put(&mut out, value);
        }
        put(&mut out, self.path.workload);
        put(&mut out, self.path.cuts.len() as u64);
        for cut in &self.path.cuts {
            put_crash(&mut out, cut.crash);
            put_state(&mut out, cut.state);
            put(&mut out, cut.recovery.len() as u64);
            for &(interrupt, state) in &cut.recovery {
                put_interrupt(&mut out, interrupt);
                put_state(&mut out, state);
            }
        }
        out.extend_from_slice(&fnv32(&out).to_le_bytes());
        format!("{PREFIX}{}", encode_base32(&out))
    }

    /// Decodes a token made for the layer named `layer`.
    pub fn decode(text: &str, layer: &str) -> Result<Token, FuzzError> {
        let body = text
            .trim()
            .strip_prefix(PREFIX)
            .ok_or_else(|| bad(&format!("does not start with {PREFIX}")))?;
        let bytes = decode_base32(body)?;
        let split = bytes.len().checked_sub(4).ok_or_else(|| bad("too short"))?;
        let (payload, sum) = bytes.split_at(split);
        if fnv32(payload).to_le_bytes() != sum {
            return Err(bad("checksum mismatch (a character mistyped?)"));
        }
        let mut reader = Reader { bytes: payload };
        if reader.get()? != u64::from(fnv32(layer.as_bytes())) {
            return Err(FuzzError::WrongLayer {
                expected: "another layer".into(),
                found: layer.into(),
            });
        }
        let mut config = FuzzConfig {
            seed: reader.get()?,
            ..FuzzConfig::default()
        };
        let flags = reader.get_bounded(63, "flags")?;
        config.replicated = flags & 1 != 0;
        config.torn = flags & 2 != 0;
        config.misdirect = flags & 4 != 0;
        config.bit_rot = flags & 8 != 0;
        config.lost_writes = flags & 16 != 0;
        config.sync_failures = flags & 32 != 0;
        config.bug = Bug::from_code(reader.get()?).ok_or_else(|| bad("unknown variant"))?;
        config.workload_len =
            u32::try_from(reader.get_bounded(1 << 16, "workload length")?).unwrap_or(1);
        config.epochs = u32::try_from(reader.get_bounded(2, "epochs")?).unwrap_or(1);
        config.disk_blocks = reader.get_bounded(1 << 20, "disk blocks")?;
        config.log_blocks = reader.get_bounded(1 << 20, "log blocks")?;
        let workload = reader.get()?;
        let mut cuts = Vec::new();
        for _ in 0..reader.get_bounded(MAX_CUTS, "cuts")? {
            let crash = get_crash(&mut reader)?;
            let state = get_state(&mut reader)?;
            let mut recovery = Vec::new();
            for _ in 0..reader.get_bounded(MAX_RECOVERY_CRASHES, "recovery crashes")? {
                let interrupt = get_interrupt(&mut reader)?;
                recovery.push((interrupt, get_state(&mut reader)?));
            }
            cuts.push(Cut {
                crash,
                state,
                recovery,
            });
        }
        if !reader.bytes.is_empty() {
            return Err(bad("trailing bytes"));
        }
        if cuts.is_empty() || cuts.len() > config.epochs as usize {
            return Err(bad("cuts do not fit the epochs"));
        }
        let disks = if config.replicated { 2 } else { 1 };
        let mut named = cuts.iter().flat_map(|cut| {
            cut.crash
                .iter()
                .map(|at| at.disk)
                .chain(cut.recovery.iter().map(|(i, _)| i.at.disk))
        });
        if named.any(|disk| disk >= disks) {
            return Err(bad(&format!(
                "a crash on a disk the stack does not have ({disks} disks)"
            )));
        }
        let fail_stops = cuts
            .iter()
            .flat_map(|cut| cut.recovery.iter())
            .any(|(i, _)| i.fail_stop);
        if fail_stops && !config.replicated {
            return Err(bad(
                "a disk failing during recovery in a run without a pair",
            ));
        }
        Ok(Token {
            layer: layer.into(),
            config,
            path: Path { workload, cuts },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let config = FuzzConfig {
            seed: u64::MAX - 3,
            replicated: true,
            torn: true,
            lost_writes: true,
            bug: Some(Bug::Log(LogBug::NoSequenceJump)),
            ..FuzzConfig::default()
        };
        let path = Path {
            workload: 1 << 40,
            cuts: vec![
                Cut {
                    crash: Some(CrashAt { disk: 1, op: 300 }),
                    state: StateChoice::Nth(17),
                    recovery: vec![
                        (
                            Interrupt {
                                at: CrashAt { disk: 1, op: 5 },
                                fail_stop: true,
                            },
                            StateChoice::Random(u64::MAX),
                        ),
                        (
                            Interrupt {
                                at: CrashAt { disk: 0, op: 9 },
                                fail_stop: false,
                            },
                            StateChoice::Nth(3),
                        ),
                    ],
                },
                Cut {
                    crash: None,
                    state: StateChoice::Random(0),
                    recovery: Vec::new(),
                },
            ],
        };
        let token = Token {
            layer: "tx".into(),
            config: config.clone(),
            path: path.clone(),
        };
        let text = token.encode();
        let back = Token::decode(&text, "tx").expect("decode");
        assert_eq!(back.path, path);
        assert_eq!(back.config.seed, config.seed);
        assert_eq!(
            (
                back.config.replicated,
                back.config.torn,
                back.config.misdirect,
                back.config.bit_rot,
                back.config.lost_writes
            ),
            (true, true, false, false, true)
        );
        assert_eq!(back.config.bug, config.bug);
        assert!(back.config.sync_failures, "the sync-failure flag survives");
        let without = Token {
            config: FuzzConfig {
                sync_failures: false,
                ..config.clone()
            },
            ..token.clone()
        };
        let back_without = Token::decode(&without.encode(), "tx").expect("decode");
        assert!(
            !back_without.config.sync_failures,
            "a run without sync failures replays without them"
        );
        assert_eq!(back.config.disk_blocks, config.disk_blocks);
        let single = Token {
            config: FuzzConfig {
                replicated: false,
                ..config.clone()
            },
            ..token.clone()
        };
        assert!(
            matches!(
                Token::decode(&single.encode(), "tx"),
                Err(FuzzError::BadToken { .. })
            ),
            "d2 on one disk"
        );
        assert!(matches!(
            Token::decode(&text, "counter"),
            Err(FuzzError::WrongLayer { .. })
        ));
        assert!(matches!(
            Token::decode(&text[..text.len() - 2], "tx"),
            Err(FuzzError::BadToken { .. })
        ));
        assert!(
            Token::decode(&text.to_uppercase().replace("TXF1-", "txf1-"), "tx").is_ok(),
            "case-insensitive"
        );
    }

    #[test]
    fn base32_round_trip() {
        for len in 0..12 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(
                decode_base32(&encode_base32(&bytes)).expect("decode"),
                bytes
            );
        }
    }
}
