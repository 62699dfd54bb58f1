use super::*;

fn peer() -> SocketAddr {
    "10.1.2.3:4567".parse().unwrap()
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(*name, HeaderValue::from_str(value).unwrap());
    }
    headers
}

#[test]
fn the_peer_address_is_the_client_unless_forwarding_is_trusted() {
    let forwarded = headers(&[("x-forwarded-for", "203.0.113.7, 10.0.0.1")]);
    assert_eq!(client_ip(peer(), &forwarded, false), peer().ip());
    assert_eq!(
        client_ip(peer(), &forwarded, true),
        "203.0.113.7".parse::<IpAddr>().unwrap()
    );
}

#[test]
fn an_unparsable_forwarded_for_falls_back_to_the_peer() {
    let forwarded = headers(&[("x-forwarded-for", "not-an-ip")]);
    assert_eq!(client_ip(peer(), &forwarded, true), peer().ip());
    assert_eq!(client_ip(peer(), &HeaderMap::new(), true), peer().ip());
}

#[test]
fn a_bearer_token_is_read_from_the_authorization_header() {
    assert_eq!(
        bearer(&headers(&[("authorization", "Bearer abc.def")])),
        Some("abc.def")
    );
    assert_eq!(
        bearer(&headers(&[("authorization", "bearer abc")])),
        Some("abc")
    );
    assert_eq!(bearer(&headers(&[("authorization", "Basic abc")])), None);
    assert_eq!(bearer(&headers(&[("authorization", "Bearer ")])), None);
    assert_eq!(bearer(&HeaderMap::new()), None);
}

#[test]
fn retry_after_is_whole_seconds_rounded_up_and_at_least_one() {
    let retry_after = |wait| {
        too_many_requests(wait)
            .headers()
            .get(RETRY_AFTER)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(retry_after(Duration::ZERO), "1");
    assert_eq!(retry_after(Duration::from_millis(1)), "1");
    assert_eq!(retry_after(Duration::from_secs(2)), "2");
    assert_eq!(retry_after(Duration::from_millis(2001)), "3");
}

#[test]
fn a_zero_rate_turns_a_limit_off_and_a_zero_burst_means_the_rate() {
    assert!(limiter(0, 10).is_none());
    let limiter = limiter(3, 0).unwrap();
    let key = "k".to_owned();
    for _ in 0..3 {
        assert!(limiter.check_key(&key).is_ok());
    }
    assert!(limiter.check_key(&key).is_err());
}
