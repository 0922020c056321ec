//! Human-readable sizes for `df` (core-rsync-coda.md §5.8; BUG-16 fixed: no overflow past TiB).

/// Formats `bytes` as `"%.1f UNIT"` with 3-character units (`  B`, `KiB` … `EiB`).
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["  B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut index = 0;
    while value >= 1024.0 && index < UNITS.len() - 1 {
        value /= 1024.0;
        index += 1;
    }
    format!("{value:.1} {}", UNITS[index])
}

#[cfg(test)]
mod tests {
    use super::size;

    #[test]
    fn sizes_at_the_unit_boundaries() {
        assert_eq!(size(0), "0.0   B");
        assert_eq!(size(1023), "1023.0   B");
        assert_eq!(size(1024), "1.0 KiB");
        assert_eq!(size(1 << 40), "1.0 TiB");
        assert_eq!(size(1 << 50), "1.0 PiB");
        assert_eq!(size(u64::MAX), "16.0 EiB");
    }
}
