//! The rules, and nothing about the network: a `width` × `height` grid,
//! coins that appear at random, and a spatial index that answers "who is
//! near this cell" for snapshots.
//!
//! The arena knows players only as positions handed to it each tick; who a
//! player is (name, token, address) is `players.rs`'s business.

use crate::game::Dir;

/// A small, fast pseudo-random generator (xorshift64*): the game's
/// randomness is for coin places, not for secrets (tokens come from the
/// kernel, see `players.rs`).
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (0 is replaced: xorshift never leaves 0).
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u32) -> u32 {
        (((self.next_u64() >> 32) * u64::from(n)) >> 32) as u32
    }
}

/// The side of a square of cells in the spatial index: small, so that the
/// rings of squares searched overshoot the circle of the nearest by little
/// (16 visited 60% more candidates at 1,000 players), and large enough
/// that a search does not spend its time on empty squares.
const BUCKET: u16 = 8;

/// The field: its size, its coins, and where they are.
#[derive(Debug)]
pub struct Arena {
    pub width: u16,
    pub height: u16,
    /// The coins, in no order.
    coins: Vec<(u16, u16)>,
    /// For each cell, 1 + the index of its coin in `coins`, or 0: taking a
    /// coin is one look-up, not a scan.
    coin_at: Vec<u32>,
    pub rng: Rng,
}

impl Arena {
    /// An empty field.
    pub fn new(width: u16, height: u16, seed: u64) -> Arena {
        Arena {
            width,
            height,
            coins: Vec::new(),
            coin_at: vec![0; usize::from(width) * usize::from(height)],
            rng: Rng::new(seed),
        }
    }

    fn cell(&self, (x, y): (u16, u16)) -> usize {
        usize::from(y) * usize::from(self.width) + usize::from(x)
    }

    /// A random cell.
    pub fn random_cell(&mut self) -> (u16, u16) {
        let x = self.rng.below(u32::from(self.width)) as u16;
        let y = self.rng.below(u32::from(self.height)) as u16;
        (x, y)
    }

    /// The coins on the field.
    pub fn coins(&self) -> &[(u16, u16)] {
        &self.coins
    }

    /// Adds coins at random free cells until there are `target` (a field
    /// with no free cell left gets no more).
    pub fn fill_coins(&mut self, target: usize) {
        let cells = self.coin_at.len();
        while self.coins.len() < target.min(cells) {
            // A few tries at random, then the first free cell: a nearly full
            // field must not loop for ever.
            let mut at = self.random_cell();
            for _ in 0..8 {
                if self.coin_at[self.cell(at)] == 0 {
                    break;
                }
                at = self.random_cell();
            }
            if self.coin_at[self.cell(at)] != 0 {
                let Some(free) = self.coin_at.iter().position(|&c| c == 0) else {
                    return;
                };
                at = (
                    (free % usize::from(self.width)) as u16,
                    (free / usize::from(self.width)) as u16,
                );
            }
            let cell = self.cell(at);
            self.coins.push(at);
            self.coin_at[cell] = self.coins.len() as u32;
        }
    }

    /// Takes the coin at `at`, if there is one.
    pub fn take_coin(&mut self, at: (u16, u16)) -> bool {
        let cell = self.cell(at);
        let Some(index) = self.coin_at[cell].checked_sub(1) else {
            return false;
        };
        self.coin_at[cell] = 0;
        self.coins.swap_remove(index as usize);
        if let Some(&moved) = self.coins.get(index as usize) {
            let moved_cell = self.cell(moved);
            self.coin_at[moved_cell] = index + 1;
        }
        true
    }

    /// Removes every coin (a new round).
    pub fn clear_coins(&mut self) {
        for at in std::mem::take(&mut self.coins) {
            let cell = self.cell(at);
            self.coin_at[cell] = 0;
        }
    }

    /// One step of a player: where it ends up, and whether it took a coin
    /// there (also when it stood still: a coin may appear under a player).
    pub fn step(&mut self, from: (u16, u16), dir: Dir) -> ((u16, u16), bool) {
        let to = dir.step(from, self.width, self.height);
        let took = self.take_coin(to);
        (to, took)
    }
}

/// Items (players or coins) sorted by the square of the field they are in,
/// rebuilt each tick in O(n) (a counting sort), so that "the ones nearest
/// to this cell" costs a few squares' worth of work, not a scan of
/// everyone: with 5,000 players a scan per receiver would be 25 million
/// distance checks a tick.
/// An item in the index: its cell, and the caller's number for it.
pub type Placed = ((u16, u16), u32);

#[derive(Debug, Default)]
pub struct Nearby {
    columns: usize,
    rows: usize,
    /// `start[b]..start[b + 1]` are the items of square `b` in `items`.
    start: Vec<u32>,
    /// (position, the caller's index), grouped by square.
    items: Vec<Placed>,
    /// Scratch for `nearest`: candidates with their distance, and the
    /// counting sort's counts.
    candidates: Vec<(u16, Placed)>,
    counts: Vec<u32>,
}

impl Nearby {
    /// Indexes `items` on a `width` × `height` field.
    pub fn rebuild(
        &mut self,
        width: u16,
        height: u16,
        items: impl Iterator<Item = Placed> + Clone,
    ) {
        self.columns = usize::from(width.div_ceil(BUCKET)).max(1);
        self.rows = usize::from(height.div_ceil(BUCKET)).max(1);
        let squares = self.columns * self.rows;
        self.start.clear();
        self.start.resize(squares + 1, 0);
        for (at, _) in items.clone() {
            let square = self.square(at);
            self.start[square + 1] += 1;
        }
        for b in 0..squares {
            self.start[b + 1] += self.start[b];
        }
        self.items.clear();
        self.items.resize(self.start[squares] as usize, ((0, 0), 0));
        // `start[b]` is used as square b's write position, then restored.
        for (at, index) in items {
            let square = self.square(at);
            let slot = &mut self.start[square];
            self.items[*slot as usize] = (at, index);
            *slot += 1;
        }
        for b in (1..=squares).rev() {
            self.start[b] = self.start[b - 1];
        }
        self.start[0] = 0;
    }

    fn square(&self, (x, y): (u16, u16)) -> usize {
        usize::from(y / BUCKET) * self.columns + usize::from(x / BUCKET)
    }

    /// Puts into `out` the `want` items nearest to `at` (or all there are),
    /// nearest first by grid distance (the larger of |dx| and |dy|).
    ///
    /// Squares are visited in rings around `at`'s. After ring `r`, every
    /// item not yet visited is more than `r` × 8 cells away, so once
    /// `want` of the visited are at most that far, they are the nearest and
    /// the search stops. Distances are small whole numbers, so the visited
    /// are counted by distance as they are found (which also says when to
    /// stop), and ordered by a counting sort: linear, where a comparison
    /// sort of the candidates took half the server's time at 1,000 players.
    pub fn nearest(&mut self, at: (u16, u16), want: usize, out: &mut Vec<Placed>) {
        out.clear();
        let (candidates, counts) = (&mut self.candidates, &mut self.counts);
        candidates.clear();
        counts.clear();
        if self.items.is_empty() || want == 0 {
            return;
        }
        let distance = |(x, y): (u16, u16)| at.0.abs_diff(x).max(at.1.abs_diff(y));
        let (cx, cy) = ((at.0 / BUCKET) as isize, (at.1 / BUCKET) as isize);
        let max_ring = self.columns.max(self.rows) as isize;
        // How many of the visited are at most `summed` away: after ring r,
        // those at most r × BUCKET away, who are sure to be the nearest (an
        // item that near lies in ring r or inside it).
        let (mut sure, mut summed) = (0usize, None::<usize>);
        let (columns, rows) = (self.columns as isize, self.rows as isize);
        for ring in 0..=max_ring {
            // Ring `ring` is two rows of squares (top and bottom, each one
            // run of `items`, since squares are stored row by row) and two
            // columns of single squares between them; parts off the field
            // are skipped, not visited.
            let (x0, x1) = ((cx - ring).max(0), (cx + ring).min(columns - 1));
            let row_run = |y: isize| {
                (0..rows)
                    .contains(&y)
                    .then_some((y * columns + x0, y * columns + x1))
            };
            // Ring 0 is one square: its top row is its bottom row.
            let runs = [row_run(cy - ring), row_run(cy + ring).filter(|_| ring > 0)];
            let sides = ((cy - ring + 1).max(0)..=(cy + ring - 1).min(rows - 1)).flat_map(|y| {
                [cx - ring, cx + ring]
                    .into_iter()
                    .filter(|x| (0..columns).contains(x))
                    .map(move |x| (y * columns + x, y * columns + x))
            });
            for (first, last) in runs.into_iter().flatten().chain(sides) {
                let items = &self.items
                    [self.start[first as usize] as usize..self.start[last as usize + 1] as usize];
                for &item in items {
                    let d = usize::from(distance(item.0));
                    if counts.len() <= d {
                        counts.resize(d + 1, 0);
                    }
                    counts[d] += 1;
                    candidates.push((d as u16, item));
                }
            }
            let bound = ring as usize * usize::from(BUCKET);
            let from = summed.map_or(0, |s| s + 1);
            sure += counts
                .get(from..=bound.min(counts.len().saturating_sub(1)))
                .map_or(0, |c| c.iter().map(|&n| n as usize).sum());
            summed = Some(bound);
            if sure >= want {
                break;
            }
        }
        // Counting sort: each distance's first place, then each candidate
        // to its place; only the first `want` places are kept.
        let mut place = 0u32;
        for c in counts.iter_mut() {
            let n = *c;
            *c = place;
            place += n;
        }
        let keep = want.min(candidates.len());
        out.resize(keep, ((0, 0), 0));
        for &(d, item) in candidates.iter() {
            let slot = &mut counts[usize::from(d)];
            if (*slot as usize) < keep {
                out[*slot as usize] = item;
            }
            *slot += 1;
        }
    }
}
