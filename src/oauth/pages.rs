//! The pages people see (sign-in, sign-up, consent, errors, the form_post hand-back): askama templates
//! under `templates/`, every value escaped, served with a strict Content-Security-Policy (styles and the
//! one script by per-response nonce, no third-party assets, `frame-ancestors 'none'`), never cached.

use askama::Template;
use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};

use crate::crypto;

/// A rendered page with its nonce and, for a page whose form posts to another origin, that origin.
pub struct Html {
    pub status: StatusCode,
    pub body: String,
    pub nonce: String,
    /// `Some`: the page carries `form-action 'self' <source>` (the form_post hand-back, whose form posts
    /// to the client's callback). `None`: no `form-action` at all. The sign-in, sign-up and consent forms
    /// post to this server, and Chromium applies `form-action` to every redirect after a form: listing
    /// only the client's callback would block a callback that sends the browser on to another origin (a
    /// token handler sending the SPA back, an auth proxy on its own host), which is the client's business.
    pub form_action: Option<String>,
}

/// A fresh nonce for one response's `<style>` and `<script>`.
pub fn nonce() -> String {
    crypto::random_alphanumeric(22)
}

impl IntoResponse for Html {
    fn into_response(self) -> Response {
        let form_action = match &self.form_action {
            Some(extra) => format!("form-action 'self' {extra}; "),
            None => String::new(),
        };
        let csp = format!(
            "default-src 'none'; style-src 'nonce-{n}'; script-src 'nonce-{n}'; img-src 'self' data:; \
             {form_action}frame-ancestors 'none'; base-uri 'none'",
            n = self.nonce
        );
        let mut response = (self.status, self.body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        if let Ok(csp) = HeaderValue::from_str(&csp) {
            headers.insert(header::CONTENT_SECURITY_POLICY, csp);
        }
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// The CSP source that lets a form (or the redirect after one) reach `url`: its origin, or its scheme
/// for a native app's private-use URI.
pub fn form_action_source(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let source = match parsed.scheme() {
        "http" | "https" => parsed.origin().ascii_serialization(),
        scheme => format!("{scheme}:"),
    };
    // A CSP source list is split on spaces and ends at `;` or `,`: refuse anything that could widen it.
    source.chars().all(|c| c.is_ascii_graphic() && c != ';' && c != ',' && c != '\'').then_some(source)
}

fn render(template: &impl Template, status: StatusCode, nonce: String, form_action: Option<String>) -> Response {
    match template.render() {
        Ok(body) => Html { status, body, nonce, form_action }.into_response(),
        Err(error) => {
            tracing::error!(error = %error, "page rendering failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub nonce: &'a str,
    pub action: &'a str,
    pub client_name: &'a str,
    pub transaction: &'a str,
    pub csrf: &'a str,
    pub email: &'a str,
    pub error: Option<&'a str>,
    pub other_href: &'a str,
    /// Where the "Continue with …" buttons post.
    pub social_action: &'a str,
    /// One button per configured social provider.
    pub providers: Vec<SocialButton>,
}

/// A "Continue with …" button of the sign-in page.
pub struct SocialButton {
    /// The provider id the button posts.
    pub id: String,
    /// The provider's name on the button.
    pub name: String,
}

#[derive(Template)]
#[template(path = "signup.html")]
pub struct SignupPage<'a> {
    pub nonce: &'a str,
    pub action: &'a str,
    pub client_name: &'a str,
    pub transaction: &'a str,
    pub csrf: &'a str,
    pub name: &'a str,
    pub email: &'a str,
    pub min_password: usize,
    pub error: Option<&'a str>,
    pub other_href: &'a str,
}

/// One scope on the consent page.
pub struct ScopeLine {
    pub value: String,
    pub description: String,
}

#[derive(Template)]
#[template(path = "consent.html")]
pub struct ConsentPage<'a> {
    pub nonce: &'a str,
    pub action: &'a str,
    pub client_name: &'a str,
    pub user_email: &'a str,
    pub transaction: &'a str,
    pub csrf: &'a str,
    pub scopes: Vec<ScopeLine>,
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage<'a> {
    pub nonce: &'a str,
    pub heading: &'a str,
    pub message: &'a str,
}

#[derive(Template)]
#[template(path = "form_post.html")]
pub struct FormPostPage<'a> {
    pub nonce: &'a str,
    pub action: &'a str,
    pub fields: Vec<(&'a str, &'a str)>,
}

/// Renders a page; `form_action` as in [`Html`].
pub fn page(template: &impl Template, status: StatusCode, nonce: String, form_action: Option<String>) -> Response {
    render(template, status, nonce, form_action)
}

/// A page with a heading and one message (errors, "signed out").
pub fn message(status: StatusCode, heading: &str, text: &str) -> Response {
    let nonce = nonce();
    render(&MessagePage { nonce: &nonce, heading, message: text }, status, nonce.clone(), None)
}

/// The `response_mode=form_post` answer (OAuth 2.0 Form Post Response Mode): a form that posts the
/// parameters to the redirect URI, submitted by a nonce'd script (or by hand with scripts off).
pub fn form_post(redirect_uri: &str, fields: &[(&str, &str)]) -> Response {
    let nonce = nonce();
    let page = FormPostPage { nonce: &nonce, action: redirect_uri, fields: fields.to_vec() };
    render(&page, StatusCode::OK, nonce.clone(), form_action_source(redirect_uri))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_action_is_the_origin_or_the_scheme() {
        assert_eq!(form_action_source("https://app.example/cb?x=1").as_deref(), Some("https://app.example"));
        assert_eq!(form_action_source("http://localhost:3000/cb").as_deref(), Some("http://localhost:3000"));
        assert_eq!(form_action_source("com.example.app:/cb").as_deref(), Some("com.example.app:"));
        assert_eq!(form_action_source("not a url"), None);
    }

    #[test]
    fn pages_escape_what_they_echo() {
        let nonce = "n";
        let page = FormPostPage {
            nonce,
            action: "https://app.example/cb?\"><script>",
            fields: vec![("state", "\"><script>alert(1)</script>")],
        };
        let html = page.render().unwrap();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("\"><script>"), "{html}");
    }
}
