//! `http.request`: make one HTTP request (method, URL, headers, body) and check its status.
//!
//! No cluster object is touched. A safe request (`GET`, `HEAD`, `OPTIONS`) mutates nothing: its
//! `diff` is empty and the request is made in `verify`. Any other method (a feature-flag toggle,
//! a cache flush) is one journaled mutation (`request`, inverse `None`) made in `apply`; the
//! same action object does not send it twice, but a run resumed after a crash between the call
//! and its journal record sends it again — make such endpoints idempotent.
//!
//! Header values may carry tokens: they are never logged, journaled or shown — only header
//! names are. URLs are shown without credentials and query string; the body only by size.

use super::{Action, ActionContext, ActionError, Applied, Diff, Inverse, Mutation, ObjectRef};
use crate::playbook::catalog;
use crate::redact;
use futures::future::BoxFuture;
use reqwest::Method;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};

/// The `http.request` action.
#[derive(Debug)]
pub struct HttpRequest {
    args: catalog::HttpRequest,
    method: Method,
    sent: AtomicBool,
}

// === impl HttpRequest ===

impl HttpRequest {
    /// Checks the arguments (a valid method and URL).
    pub fn new(args: catalog::HttpRequest) -> Result<HttpRequest, ActionError> {
        let method = Method::from_bytes(args.method.trim().to_ascii_uppercase().as_bytes())
            .map_err(|_| ActionError::Invalid {
                object: "http.request".into(),
                reason: format!("{:?} is not an HTTP method", args.method),
            })?;
        if reqwest::Url::parse(&args.url).is_err() {
            return Err(ActionError::Invalid {
                object: "http.request".into(),
                reason: format!("{} is not a valid URL", redact::url(&args.url)),
            });
        }
        Ok(HttpRequest {
            args,
            method,
            sent: AtomicBool::new(false),
        })
    }

    fn is_safe(&self) -> bool {
        matches!(self.method, Method::GET | Method::HEAD | Method::OPTIONS)
    }

    fn shown(&self) -> String {
        format!("{} {}", self.method, redact::url(&self.args.url))
    }

    async fn send(&self, ctx: &ActionContext) -> Result<u16, ActionError> {
        let shown_url = redact::url(&self.args.url);
        let mut request = ctx
            .http
            .request(self.method.clone(), &self.args.url)
            .timeout(self.args.timeout.0);
        for (name, value) in &self.args.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if let Some(body) = &self.args.body {
            request = request.body(body.clone());
        }
        let response = request.send().await.map_err(|err| ActionError::Http {
            url: shown_url.clone(),
            reason: err.without_url().to_string(),
        })?;
        let status = response.status().as_u16();
        tracing::info!(run = %ctx.run_id, step = %ctx.step, method = %self.method,
                       url = %shown_url, status, "http request made");
        if status != self.args.expected_status {
            return Err(ActionError::Http {
                url: shown_url,
                reason: format!("answered {status}, expected {}", self.args.expected_status),
            });
        }
        Ok(status)
    }

    fn compute(&self) -> Diff {
        if self.is_safe() || self.sent.load(Ordering::SeqCst) {
            return Diff {
                summary: format!("{} (expects {})", self.shown(), self.args.expected_status),
                mutations: Vec::new(),
                progress: None,
            };
        }
        let headers: Vec<&str> = self.args.headers.keys().map(String::as_str).collect();
        let body = self.args.body.as_ref().map_or(0, String::len);
        let description = format!("{} (expects {})", self.shown(), self.args.expected_status);
        Diff {
            summary: description.clone(),
            mutations: vec![Mutation {
                id: "request".into(),
                target: ObjectRef {
                    api_version: "ripcord.dev/v1alpha1".into(),
                    kind: "HttpRequest".into(),
                    namespace: None,
                    name: redact::url(&self.args.url),
                },
                description,
                diff: format!(
                    "+ {} headers: [{}] body: {body} bytes\n",
                    self.shown(),
                    headers.join(", ")
                ),
                pre_image: serde_json::Value::Null,
                resource_version: None,
                request: json!({ "method": self.method.as_str(), "headerNames": headers,
                                 "bodyBytes": body }),
                inverse: Inverse::None {
                    reason: "an HTTP request to another system is not reverted automatically"
                        .into(),
                },
            }],
            progress: None,
        }
    }
}

impl Action for HttpRequest {
    fn kind(&self) -> &'static str {
        "http.request"
    }

    fn targets(&self, _default_namespace: &str) -> Vec<ObjectRef> {
        Vec::new()
    }

    fn verify_when_satisfied(&self) -> bool {
        self.is_safe()
    }

    fn diff<'a>(&'a self, _ctx: &'a ActionContext) -> BoxFuture<'a, Result<Diff, ActionError>> {
        Box::pin(async move { Ok(self.compute()) })
    }

    fn apply<'a>(
        &'a self,
        ctx: &'a ActionContext,
        mutation: &'a Mutation,
    ) -> BoxFuture<'a, Result<Applied, ActionError>> {
        Box::pin(async move {
            self.send(ctx).await?;
            self.sent.store(true, Ordering::SeqCst);
            Ok(Applied {
                id: mutation.id.clone(),
                target: mutation.target.clone(),
                resource_version_after: None,
            })
        })
    }

    fn verify<'a>(
        &'a self,
        ctx: &'a ActionContext,
        _applied: &'a [Applied],
    ) -> BoxFuture<'a, Result<(), ActionError>> {
        Box::pin(async move {
            if self.is_safe() {
                self.send(ctx).await?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn args(method: &str) -> catalog::HttpRequest {
        catalog::HttpRequest {
            method: method.into(),
            url: "http://user:pw@127.0.0.1:9/flags?token=secret".into(),
            headers: BTreeMap::from([("Authorization".to_string(), "Bearer s3cret".to_string())]),
            body: Some("{\"on\":true}".into()),
            expected_status: 200,
            timeout: crate::playbook::Duration::from_secs(1),
        }
    }

    #[test]
    fn safe_requests_mutate_nothing() {
        let Ok(get) = HttpRequest::new(args("get")) else {
            panic!("GET rejected");
        };
        assert!(get.verify_when_satisfied());
        assert!(get.compute().mutations.is_empty());
    }

    #[test]
    fn unsafe_requests_are_one_mutation_without_secrets() {
        let Ok(post) = HttpRequest::new(args("POST")) else {
            panic!("POST rejected");
        };
        let diff = post.compute();
        assert_eq!(diff.mutations.len(), 1);
        let text = serde_json::to_string(&diff).unwrap_or_default();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(!text.contains("token=secret"), "{text}");
        assert!(!text.contains("pw@"), "{text}");
        assert!(text.contains("Authorization"), "{text}");
        assert!(HttpRequest::new(args("NOT A METHOD")).is_err());
    }
}
