//! SigV4 signing of API requests (`FERRY_API_AUTH=iam`), for an API Gateway HTTP API with
//! `AWS_IAM` authorization.
//!
//! [`sign`] is a pure function of the request, the credentials, the region and the time, so
//! tests can check it against an independent signer (botocore) byte for byte.
//!
//! The payload hash goes into the canonical request only (`PayloadChecksumKind::NoHeader`), as
//! the AWS SDKs and botocore's `SigV4Auth` do for `execute-api`: API Gateway does not need an
//! `x-amz-content-sha256` header, and one header less is one thing less to get out of step.
//! Path segments are encoded a second time (`PercentEncodingMode::Double`), as SigV4 asks for
//! every service but S3.

use std::time::SystemTime;

use anyhow::{Context, Result};
pub use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings,
};
use aws_sigv4::sign::v4;

/// The service name API Gateway signs for.
pub const SERVICE: &str = "execute-api";

/// A request to sign: what will go on the wire.
pub struct Request<'a> {
    pub method: &'a str,
    /// Full URL, already percent-encoded as it will be sent, with its query string.
    pub url: &'a str,
    /// Headers sent with the request (besides `host`, which is taken from the URL). All of them
    /// are signed except those SigV4 leaves out (`authorization`, `user-agent`, …).
    pub headers: &'a [(&'a str, &'a str)],
    /// The body's bytes; `None` for a streamed body, signed as `UNSIGNED-PAYLOAD`.
    pub body: Option<&'a [u8]>,
}

/// The region of an API Gateway default endpoint (`{api-id}.execute-api.{region}.amazonaws.com`,
/// or `.amazonaws.com.cn`): the region its requests must be signed for, whatever the default
/// region of the AWS configuration says. `None` for any other host (a custom domain, a local
/// address).
pub fn region_of_api_host(host: &str) -> Option<&str> {
    let labels: Vec<&str> = host.split('.').collect();
    match labels.as_slice() {
        [id, "execute-api", region, "amazonaws", "com"]
        | [id, "execute-api", region, "amazonaws", "com", "cn"]
            if !id.is_empty() && !region.is_empty() =>
        {
            Some(region)
        }
        _ => None,
    }
}

/// The headers to add to `request` so that API Gateway accepts it as signed by `credentials`
/// at `time`: `authorization`, `x-amz-date` and, with temporary credentials,
/// `x-amz-security-token`.
pub fn sign(
    request: &Request<'_>,
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
) -> Result<Vec<(String, String)>> {
    let identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::NoHeader;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(settings)
        .build()
        .context("building the SigV4 signing parameters")?
        .into();
    let body = match request.body {
        Some(bytes) => SignableBody::Bytes(bytes),
        None => SignableBody::UnsignedPayload,
    };
    let signable = SignableRequest::new(
        request.method,
        request.url,
        request.headers.iter().copied(),
        body,
    )
    .with_context(|| format!("cannot sign {} {}", request.method, request.url))?;
    let (instructions, _signature) = aws_sigv4::http_request::sign(signable, &params)
        .with_context(|| format!("signing {} {}", request.method, request.url))?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// 2026-12-01T13:45:00Z
    fn fixed_time() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_132_700)
    }

    fn creds(token: Option<&str>) -> Credentials {
        Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            token.map(str::to_owned),
            None,
            "test",
        )
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn get(url: &str) -> Request<'_> {
        Request {
            method: "GET",
            url,
            headers: &[],
            body: Some(b""),
        }
    }

    #[test]
    fn a_get_is_signed_for_execute_api_in_the_region_at_the_given_time() {
        let headers = sign(
            &get("https://abc.execute-api.eu-west-1.amazonaws.com/v1/flow-runs?limit=20"),
            &creds(None),
            "eu-west-1",
            fixed_time(),
        )
        .unwrap();
        assert_eq!(header(&headers, "x-amz-date"), Some("20261201T134500Z"));
        let auth = header(&headers, "authorization").unwrap();
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261201/eu-west-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature="
            ),
            "{auth}"
        );
        assert_eq!(header(&headers, "x-amz-security-token"), None);
        assert_eq!(header(&headers, "x-amz-content-sha256"), None);
    }

    #[test]
    fn the_signature_is_the_one_botocore_computes_for_the_same_request() {
        // Pinned from botocore 1.44.8 `SigV4Auth(creds, "execute-api", "us-east-1")` on this
        // request at this time; tests/tests/sigv4.rs recomputes such values live.
        let headers = sign(
            &Request {
                method: "PUT",
                url: "http://127.0.0.1:4300/v1/deployments/etl/nightly",
                headers: &[("content-type", "application/json")],
                body: Some(br#"{"flow":"etl"}"#),
            },
            &creds(None),
            "us-east-1",
            fixed_time(),
        )
        .unwrap();
        assert_eq!(
            header(&headers, "authorization"),
            Some(PINNED_PUT_AUTHORIZATION)
        );
    }

    const PINNED_PUT_AUTHORIZATION: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261201/us-east-1/execute-api/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=229ded1d3dd9434f210ba4e5f5a17486ca5f783cf587f58bd8c098f72e29a7f6";

    #[test]
    fn temporary_credentials_send_and_sign_the_session_token() {
        let headers = sign(
            &get("https://abc.execute-api.us-east-1.amazonaws.com/v1/work-queues"),
            &creds(Some("session-token")),
            "us-east-1",
            fixed_time(),
        )
        .unwrap();
        assert_eq!(
            header(&headers, "x-amz-security-token"),
            Some("session-token")
        );
        assert!(header(&headers, "authorization")
            .unwrap()
            .contains("SignedHeaders=host;x-amz-date;x-amz-security-token,"));
    }

    #[test]
    fn the_body_method_query_and_time_are_all_covered_by_the_signature() {
        let url = "https://abc.execute-api.us-east-1.amazonaws.com/v1/bundles/ab";
        let base = Request {
            method: "PUT",
            url,
            headers: &[("content-type", "application/gzip")],
            body: Some(b"one"),
        };
        let auth = |req: &Request<'_>, time: SystemTime| {
            let h = sign(req, &creds(None), "us-east-1", time).unwrap();
            header(&h, "authorization").unwrap().to_owned()
        };
        let reference = auth(&base, fixed_time());
        assert!(reference.contains("SignedHeaders=content-type;host;x-amz-date,"));
        assert_eq!(reference, auth(&base, fixed_time()), "deterministic");
        let other_body = Request {
            body: Some(b"two"),
            ..base
        };
        let other_method = Request {
            method: "POST",
            ..base
        };
        let other_url = Request {
            url: "https://abc.execute-api.us-east-1.amazonaws.com/v1/bundles/ab?x=1",
            ..base
        };
        let unsigned = Request { body: None, ..base };
        for (what, req) in [
            ("body", &other_body),
            ("method", &other_method),
            ("query", &other_url),
            ("unsigned payload", &unsigned),
        ] {
            assert_ne!(reference, auth(req, fixed_time()), "{what}");
        }
        assert_ne!(
            reference,
            auth(&base, fixed_time() + Duration::from_secs(1)),
            "time"
        );
    }

    #[test]
    fn the_region_of_an_execute_api_endpoint_is_read_from_its_host() {
        assert_eq!(
            region_of_api_host("abc123.execute-api.eu-west-1.amazonaws.com"),
            Some("eu-west-1")
        );
        assert_eq!(
            region_of_api_host("abc123.execute-api.cn-north-1.amazonaws.com.cn"),
            Some("cn-north-1")
        );
        for other in [
            "api.example.com",
            "127.0.0.1",
            "localhost",
            "abc123.execute-api.eu-west-1.example.com",
            "execute-api.eu-west-1.amazonaws.com",
        ] {
            assert_eq!(region_of_api_host(other), None, "{other}");
        }
    }

    #[test]
    fn a_url_that_is_not_a_uri_is_an_error_naming_it() {
        let err = sign(&get("not a url"), &creds(None), "us-east-1", fixed_time()).unwrap_err();
        assert!(format!("{err:#}").contains("not a url"), "{err:#}");
    }
}
