//! Name patterns for policy rules: `*` matches any run of characters (including none),
//! `?` exactly one character; everything else matches itself, case-sensitively. A
//! pattern's specificity is its number of literal characters: when several patterns
//! match, the most specific wins, and two patterns of equal specificity that could match
//! the same name are a configuration error (see [`Glob::overlaps`]).

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: Vec<char>,
    specificity: usize,
    /// The pattern as written (metric label).
    source: Box<str>,
}

impl Glob {
    pub fn new(source: &str) -> Glob {
        let pattern: Vec<char> = source.chars().collect();
        let specificity = pattern.iter().filter(|c| !matches!(c, '*' | '?')).count();
        Glob {
            pattern,
            specificity,
            source: source.into(),
        }
    }

    pub fn as_string(&self) -> String {
        self.source.to_string()
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn is_exact(&self) -> bool {
        !self.pattern.iter().any(|c| matches!(c, '*' | '?'))
    }

    pub fn specificity(&self) -> usize {
        self.specificity
    }

    /// Does `name` match? Linear-time in practice: backtracks only to the last `*`.
    pub fn matches(&self, name: &str) -> bool {
        // ASCII names (the usual case) are matched in place, without collecting chars.
        if name.is_ascii() {
            match_slice(&self.pattern, name.as_bytes())
        } else {
            match_slice(&self.pattern, &name.chars().collect::<Vec<char>>())
        }
    }

    /// Could some name match both patterns?
    pub fn overlaps(&self, other: &Glob) -> bool {
        let (a, b) = (&self.pattern, &other.pattern);
        // seen[i][j]: state (i, j) already explored without success.
        let mut seen = vec![vec![false; b.len() + 1]; a.len() + 1];
        let mut stack = vec![(0usize, 0usize)];
        while let Some((i, j)) = stack.pop() {
            if seen[i][j] {
                continue;
            }
            seen[i][j] = true;
            if i == a.len() && j == b.len() {
                return true;
            }
            let a_star = i < a.len() && a[i] == '*';
            let b_star = j < b.len() && b[j] == '*';
            if a_star {
                stack.push((i + 1, j)); // the star matches nothing more
                if j < b.len() {
                    stack.push((i, j + 1)); // the star absorbs b's next token
                }
            }
            if b_star {
                stack.push((i, j + 1));
                if i < a.len() {
                    stack.push((i + 1, j));
                }
            }
            if !a_star && !b_star && i < a.len() && j < b.len() {
                let (x, y) = (a[i], b[j]);
                if x == '?' || y == '?' || x == y {
                    stack.push((i + 1, j + 1));
                }
            }
        }
        false
    }
}

/// Wildcard matching of `n` against pattern `p`; backtracks only to the last `*`.
fn match_slice<C: Copy + Into<char>>(p: &[char], n: &[C]) -> bool {
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        let c: char = n[ni].into();
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == c)) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        let g = Glob::new("get-*");
        assert!(g.matches("get-"));
        assert!(g.matches("get-env"));
        assert!(!g.matches("Get-env"));
        assert!(!g.matches("xget-env"));
        assert!(Glob::new("a?c").matches("abc"));
        assert!(!Glob::new("a?c").matches("ac"));
        assert!(Glob::new("*").matches(""));
        assert!(Glob::new("test://static/resource/*").matches("test://static/resource/12"));
        assert!(Glob::new("*a*b*").matches("xxaxxbxx"));
        assert!(!Glob::new("*a*b*").matches("xxbxxaxx"));
        assert!(Glob::new("é?").matches("éx"));
    }

    #[test]
    fn specificity_counts_literals() {
        assert_eq!(Glob::new("get-*").specificity(), 4);
        assert_eq!(Glob::new("a?c").specificity(), 2);
        assert!(Glob::new("echo").is_exact());
        assert!(!Glob::new("ec?o").is_exact());
    }

    #[test]
    fn overlap() {
        let o = |a: &str, b: &str| Glob::new(a).overlaps(&Glob::new(b));
        assert!(o("get-*", "*-env"), "get-env");
        assert!(o("a*", "*b"), "ab");
        assert!(o("a?c", "ab?"), "abc");
        assert!(!o("a*", "b*"));
        assert!(!o("echo", "echo2"));
        assert!(!o("a?", "abc"));
        assert!(o("*", "anything"));
        assert!(!o("x*y", "x*z"));
        assert!(o("x*", "x*"));
    }
}
