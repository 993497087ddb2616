//! URLs fit for messages. The one URL redactor is
//! [`crate::journal::redact_url_credentials`] (credentials in free text, kept where the journal
//! owns it); [`url`] adds what a URL shown on its own also needs.

use crate::journal::redact_url_credentials;

/// `url` fit for an error message, a plan or a journal record: its credentials replaced by
/// `<redacted>` (by [`redact_url_credentials`]), its query and fragment dropped (a webhook's
/// query often carries a token); `(invalid URL)` when it does not parse (it may hold a secret
/// anywhere).
pub fn url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            parsed.set_query(None);
            parsed.set_fragment(None);
            let shown = parsed.to_string();
            redact_url_credentials(&shown).unwrap_or(shown)
        }
        Err(_) => "(invalid URL)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue14_credentials_go_through_the_journal_redactor() {
        assert_eq!(
            url("https://user:pw@example.test/hook"),
            "https://<redacted>@example.test/hook"
        );
        assert_eq!(
            url("https://tok@example.test/"),
            "https://<redacted>@example.test/"
        );
        assert_eq!(
            url("http://:pw@example.test/x"),
            "http://<redacted>@example.test/x"
        );
    }

    #[test]
    fn issue14_query_and_fragment_are_dropped() {
        // Kept from actions/zone_failout.rs's redact_url (the journal's keeps the query).
        assert_eq!(
            url("https://user:pw@example.test/hook?token=abc#frag"),
            "https://<redacted>@example.test/hook"
        );
    }

    #[test]
    fn issue14_a_clean_url_is_shown_as_parsed_and_an_invalid_one_not_at_all() {
        assert_eq!(
            url("http://127.0.0.1:9090/api"),
            "http://127.0.0.1:9090/api"
        );
        assert_eq!(url("not a url with pw@host"), "(invalid URL)");
    }
}
