use proptest::prelude::*;

use super::*;

/// Asserts one token's text, position and original span (tantivy's `assert_token` helper).
fn assert_token(token: &Token, position: usize, text: &str, from: usize, to: usize) {
    assert_eq!(
        (
            token.position,
            token.text.as_str(),
            token.offset_from,
            token.offset_to
        ),
        (position, text, from, to),
        "token {token:?}"
    );
}

fn texts(input: &str) -> Vec<String> {
    analyzer()
        .analyze(input)
        .into_iter()
        .filter(|t| !t.stop)
        .map(|t| t.text)
        .collect()
}

#[test]
fn english_words_are_stemmed_and_stop_words_flagged() {
    let tokens = analyzer().analyze("Resetting the Passwords");
    assert_token(&tokens[0], 0, "reset", 0, 9);
    assert!(tokens[1].stop && tokens[1].text == "the");
    assert_token(&tokens[2], 2, "password", 14, 23);
}

#[test]
fn contraction_pieces_are_stop_words() {
    assert_eq!(
        texts("I can't SSH into the user's server, it doesn’t answer and won't reboot"),
        ["ssh", "user", "server", "answer", "reboot"]
    );
    // Only after an apostrophe that follows a word: a lone `t` or `s`, or `'tis`, stays.
    assert_eq!(texts("option t and s 'tis"), ["option", "t", "s", "tis"]);
    // The negated auxiliary only before `n't`.
    assert_eq!(texts("don 'tis don"), ["don", "tis", "don"]);
}

#[test]
fn identifiers_stay_whole_and_also_split() {
    let t = texts("instance type ecs.g6.large fails with ERR_CONNECTION_RESET 404");
    for expected in [
        "ecs.g6.large",
        "ecs",
        "g6",
        "larg",
        "err_connection_reset",
        "connect",
        "404",
    ] {
        assert!(
            t.contains(&expected.to_string()),
            "{expected} missing from {t:?}"
        );
    }
}

#[test]
fn chinese_words_come_with_their_sub_words_at_one_position() {
    let tokens = analyzer().analyze("中国农业银行");
    let at_zero: Vec<&str> = tokens
        .iter()
        .filter(|t| t.position == 0)
        .map(|t| t.text.as_str())
        .collect();
    assert!(at_zero.contains(&"中国农业银行"), "{tokens:?}");
    assert!(
        at_zero.contains(&"农业") && at_zero.contains(&"银行"),
        "{tokens:?}"
    );
}

#[test]
fn product_terms_from_the_user_dictionary() {
    let t = texts("我的ECS实例无法启动，云盘读写很慢，安全组怎么配置");
    for expected in ["ecs实例", "ecs", "实例", "无法启动", "云盘", "安全组"] {
        assert!(
            t.contains(&expected.to_string()),
            "{expected} missing from {t:?}"
        );
    }
    // With a space between, as people type it.
    assert!(texts("ECS 实例 无法 ssh 登录").contains(&"ecs实例".to_string()));
    assert!(texts("申请SSL证书").contains(&"ssl证书".to_string()));
}

#[test]
fn traditional_and_full_width_input_match_simplified_text() {
    assert_eq!(texts("帳單餘額"), texts("账单余额"));
    assert_eq!(texts("ＳＳＨ　無法連線"), texts("ssh 无法连线"));
}

#[test]
fn offsets_point_into_the_original_text() {
    let original = "ＥＣＳ實例無法啟動";
    let tokens = analyzer().analyze(original);
    let ecs = tokens.iter().find(|t| t.text == "ecs").expect("ecs token");
    assert_eq!(&original[ecs.offset_from..ecs.offset_to], "ＥＣＳ");
    let instance = tokens
        .iter()
        .find(|t| t.text == "实例")
        .expect("实例 token");
    assert_eq!(&original[instance.offset_from..instance.offset_to], "實例");
}

#[test]
fn mixed_sentence_in_one_pass() {
    let t = texts("ECS 无法 ssh 登录, error 502 Bad Gateway");
    for expected in [
        "ecs", "无法", "ssh", "登录", "error", "502", "bad", "gateway",
    ] {
        assert!(
            t.contains(&expected.to_string()),
            "{expected} missing from {t:?}"
        );
    }
}

#[test]
fn empty_and_punctuation_only_input_has_no_tokens() {
    assert!(analyzer().analyze("").is_empty());
    assert!(analyzer().analyze("  ，。!?…—  ").is_empty());
}

#[test]
fn fingerprint_names_the_version() {
    assert!(analyzer().fingerprint().starts_with(ANALYZER_VERSION));
}

fn check_invariants(text: &str) -> Result<(), TestCaseError> {
    let tokens = analyzer().analyze(text);
    let mut last = (0, 0);
    for t in &tokens {
        prop_assert!(
            t.offset_from < t.offset_to && t.offset_to <= text.len(),
            "{t:?}"
        );
        prop_assert!(text.is_char_boundary(t.offset_from) && text.is_char_boundary(t.offset_to));
        prop_assert!(!t.text.is_empty());
        prop_assert!(
            (t.position, t.offset_from) >= last,
            "order broken at {t:?} after {last:?}"
        );
        last = (t.position, t.offset_from);
    }
    Ok(())
}

proptest! {
    #[test]
    fn never_panics_and_keeps_offsets_and_positions_in_order(text in "\\PC{0,80}") {
        check_invariants(&text)?;
    }

    #[test]
    fn mixed_script_text_keeps_invariants(
        text in "([a-zA-Z0-9._ -]{0,6}|[一-龥]{0,6}|[ａ-ｚＡ-Ｚ０-９]{0,3}|[帳單餘額雲實例]{0,4}|ECS实例|SSL证书|[，。！？]){0,12}"
    ) {
        check_invariants(&text)?;
    }
}
