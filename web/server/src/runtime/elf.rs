//! Tells whether an executable is statically linked (no `PT_INTERP` program header), so a
//! `FROM scratch` image is never built around a binary that cannot start in it.

/// `Some(true)` for a static ELF executable, `Some(false)` for a dynamic one, `None` when the
/// bytes are not a 64-bit little-endian ELF file.
pub fn is_static(bytes: &[u8]) -> Option<bool> {
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return None;
    }
    let u16_at = |at: usize| bytes.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |at: usize| bytes.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let u64_at = |at: usize| bytes.get(at..at + 8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_le_bytes);
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    const PT_INTERP: u32 = 3;
    for i in 0..phnum {
        if u32_at(phoff + i * phentsize)? == PT_INTERP {
            return Some(false);
        }
    }
    Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_static_from_dynamic() {
        // This test binary is built static by the workspace's cargo configuration, like the
        // host; /bin/sh on Debian is dynamic.
        let own = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(is_static(&own), Some(true));
        let sh = std::fs::read("/bin/sh").unwrap();
        assert_eq!(is_static(&sh), Some(false));
        assert_eq!(is_static(b"#!/bin/sh\n"), None);
    }
}
