//! `--ports`: `N`, `N-M` and comma lists of them (`22,80,8000-8100`), as a
//! set of ports scanned in ascending order.

/// A set of TCP ports, one bit each.
pub struct PortSet {
    bits: Vec<u64>,
}

impl PortSet {
    /// Parses `22,80,8000-8100`. Ports run from 1 to 65535; a range's start
    /// may not be past its end; repeats are scanned once.
    pub fn parse(text: &str) -> Result<PortSet, String> {
        let mut set = PortSet {
            bits: vec![0; 65536 / 64],
        };
        for item in text.split(',') {
            let item = item.trim();
            let (low, high) = match item.split_once('-') {
                Some((low, high)) => (port(low)?, port(high)?),
                None => {
                    let p = port(item)?;
                    (p, p)
                }
            };
            if low > high {
                return Err(format!("range {item} runs backwards"));
            }
            for p in low..=high {
                set.insert(p);
            }
        }
        Ok(set)
    }

    fn insert(&mut self, port: u16) {
        self.bits[port as usize / 64] |= 1 << (port as usize % 64);
    }

    /// The ports, in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (1..=u16::MAX).filter(|&p| self.bits[p as usize / 64] & (1 << (p as usize % 64)) != 0)
    }
}

fn port(text: &str) -> Result<u16, String> {
    match text.trim().parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("'{text}' is not a port (1-65535)")),
        Ok(p) => Ok(p),
    }
}
