//! The one error-chain walker: an error and its causes on one line, for people, journal
//! records and API answers (a message never repeats its cause; the reporter walks the chain).

/// `err` and its sources, `: `-separated. A cause whose text the line already holds is left
/// out (a message that quotes its source, as `kube::Error` and `reqwest::Error` often do, is
/// not repeated).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{message}")]
    struct Layer {
        message: String,
        #[source]
        source: Option<Box<Layer>>,
    }

    fn layers(messages: &[&str]) -> Layer {
        messages
            .iter()
            .rev()
            .fold(None, |source, message| {
                Some(Layer {
                    message: message.to_string(),
                    source: source.map(Box::new),
                })
            })
            .unwrap_or_else(|| panic!("at least one layer"))
    }

    #[test]
    fn issue14_every_cause_is_on_one_line_in_order() {
        let err = layers(&[
            "patch deployment shop/web",
            "connection refused",
            "os error 111",
        ]);
        assert_eq!(
            error_chain(&err),
            "patch deployment shop/web: connection refused: os error 111"
        );
    }

    #[test]
    fn issue14_a_cause_the_message_already_quotes_is_not_repeated() {
        let err = layers(&[
            "get lease: HTTP 503 unavailable",
            "HTTP 503 unavailable",
            "eof",
        ]);
        assert_eq!(error_chain(&err), "get lease: HTTP 503 unavailable: eof");
    }

    #[test]
    fn issue14_an_error_without_a_source_is_its_message() {
        assert_eq!(error_chain(&layers(&["plain"])), "plain");
    }

    #[test]
    fn issue14_a_reqwest_error_chain_keeps_its_transport_cause() {
        // The notifier's old copy took a `reqwest::Error`; the walker takes it as `&dyn Error`.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let err = rt
            .block_on(reqwest::Client::new().get("http://127.0.0.1:9/").send())
            .err()
            .unwrap_or_else(|| panic!("port 9 answered"));
        let line = error_chain(&err.without_url());
        assert!(line.starts_with("error sending request"), "{line}");
        assert!(line.matches(": ").count() >= 1, "the causes follow: {line}");
    }
}
