//! "Did you mean …?" suggestions by edit distance (a tiny Levenshtein, no extra crate).

/// The edit distance between two strings (in chars): Levenshtein with adjacent
/// transpositions counting as one edit (optimal string alignment), so `nmae` is one edit
/// away from `name`.
pub fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        d[i * width] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(width) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

/// The candidate closest to `word`, if it is close enough to be a plausible typo: a
/// case-insensitive match, or an edit distance of at most a third of the longer word (and at
/// least 1; at most 3 for long words).
pub fn did_you_mean<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let lower = word.to_lowercase();
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates {
        if candidate == word {
            continue;
        }
        let distance = if candidate.to_lowercase() == lower {
            0
        } else {
            levenshtein(&lower, &candidate.to_lowercase())
        };
        let limit = (word.chars().count().max(candidate.chars().count()) / 3).clamp(1, 3);
        if distance <= limit && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

/// A hint sentence: "did you mean `x`?" or, failing that, the list of valid names.
pub fn hint<'a, I>(word: &str, candidates: I) -> String
where
    I: IntoIterator<Item = &'a str> + Clone,
{
    match did_you_mean(word, candidates.clone()) {
        Some(candidate) => format!("did you mean `{candidate}`?"),
        None => {
            let names: Vec<String> = candidates.into_iter().map(|c| format!("`{c}`")).collect();
            if names.is_empty() {
                "nothing is allowed here".to_string()
            } else {
                format!("expected one of {}", names.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(levenshtein("", ""), 0);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("abc", ""), 3);
        assert_eq!(levenshtein("nmae", "name"), 1);
    }

    #[test]
    fn suggests_close_names_only() {
        let names = ["timeout", "retries", "onFailure"];
        assert_eq!(did_you_mean("timout", names), Some("timeout"));
        assert_eq!(did_you_mean("onfailure", names), Some("onFailure"));
        assert_eq!(did_you_mean("zzz", names), None);
        assert_eq!(
            did_you_mean(
                "deployment.rolback",
                ["deployment.rollback", "deployment.restart"]
            ),
            Some("deployment.rollback")
        );
    }
}
