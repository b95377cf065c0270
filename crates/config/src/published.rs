//! Password hashes that strictmx itself has published, which no server may accept.
//!
//! Whoever has read the documentation knows the password behind these, so a user configured
//! with one is an open door. `check-config` and `serve` refuse them; the list only grows, since
//! old copies of the documentation stay around.

/// Each published hash, with where it was published and the password it is known to match.
const PUBLISHED: &[(&str, &str)] = &[
    // config/strictmx.toml, [[auth.user]] `billing-app`, from commit 0d8b301 until issue 13;
    // the file said it was the hash of "example-only-change-me".
    (
        "$argon2id$v=19$m=19456,t=2,p=1$sBN/mlu0BB/y2+aAKt8i2w$RaY8C1ztvj/Enk6t6s10braX5ki/xiYH1mQqyhZSas8",
        "config/strictmx.toml (password \"example-only-change-me\")",
    ),
    // config/strictmx.toml, [[auth.user]] `billing-app`, from commit d436d73 until 0d8b301
    // (salt "saltsaltsalt").
    (
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$2pB0dXyHxnN6wX7P1v3lkd6mMxxu0iJm0U5cZcPq6Wc",
        "an earlier config/strictmx.toml",
    ),
];

/// Where `hash` was published, if strictmx published it.
pub(crate) fn published_in(hash: &str) -> Option<&'static str> {
    PUBLISHED
        .iter()
        .find(|(published, _)| *published == hash.trim())
        .map(|(_, place)| *place)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_hash_is_known_and_a_fresh_one_is_not() {
        let example = "$argon2id$v=19$m=19456,t=2,p=1$sBN/mlu0BB/y2+aAKt8i2w$RaY8C1ztvj/Enk6t6s10braX5ki/xiYH1mQqyhZSas8";
        assert!(
            published_in(example)
                .unwrap()
                .contains("example-only-change-me")
        );
        assert_eq!(published_in(&strictmx_inbound::hash_password("x")), None);
    }

    #[test]
    fn every_usable_hash_in_the_shipped_documentation_is_refused() {
        // A hash that can be copied from the documentation must be on the list above; better
        // still, the documentation shows none (placeholders such as `$argon2id$...` are fine).
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut files = vec![root.join("README.md"), root.join("config/strictmx.toml")];
        for dir in ["docs", "docker"] {
            for entry in std::fs::read_dir(root.join(dir)).expect("read the directory") {
                let path = entry.expect("directory entry").path();
                if path.is_file() {
                    files.push(path);
                }
            }
        }
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read the file");
            for (at, _) in text.match_indices("$argon2") {
                let hash: String = text[at..]
                    .chars()
                    .take_while(|c| !c.is_whitespace() && !matches!(c, '"' | '\'' | '`'))
                    .collect();
                let usable = argon2::PasswordHash::new(&hash).is_ok();
                assert!(
                    !usable || published_in(&hash).is_some(),
                    "{} shows a usable hash: {hash}",
                    file.display()
                );
            }
        }
    }
}
