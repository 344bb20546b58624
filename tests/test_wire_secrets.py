"""Key masking: never more than a key's scheme and its last four characters."""

import pytest

from wire.secrets import mask_api_key, masked_key_of

SECRET = "Zq8xKp3mW7vR2tY9nL4bH6cJ1dF5gS0a"


@pytest.mark.parametrize(
    ("credential", "masked"),
    [
        (f"Bearer sk-proj-{SECRET}", f"sk-proj-...{SECRET[-4:]}"),
        (f"Bearer sk-{SECRET}", f"sk-...{SECRET[-4:]}"),
        (f"bearer sk-svcacct-{SECRET}", f"sk-svcacct-...{SECRET[-4:]}"),
        (f"sk-ant-api03-{SECRET}", f"sk-ant-api03-...{SECRET[-4:]}"),
        (f"Bearer sk-ant-oat01-{SECRET}", f"sk-ant-oat01-...{SECRET[-4:]}"),
        (f"sk-ant-admin01-{SECRET}", f"sk-ant-admin01-...{SECRET[-4:]}"),
        (SECRET, f"...{SECRET[-4:]}"),
        ("Bearer sk-short", "sk-..."),
        ("sk-ant-api03-short", "sk-ant-api03-..."),
        ("Bearer test_openai_api_key", "..._key"),
        (None, "none"),
        ("Bearer ", "none"),
    ],
)
def test_api_keys_keep_only_scheme_and_last_four(credential, masked):
    assert mask_api_key(credential) == masked


@pytest.mark.parametrize("scheme", ["sk-proj-", "sk-ant-api03-", "sk-ant-oat01-", ""])
def test_no_eight_character_piece_of_a_key_survives_masking(scheme):
    masked = mask_api_key(f"Bearer {scheme}{SECRET}")
    pieces = {SECRET[i : i + 8] for i in range(len(SECRET) - 7)}
    assert not any(piece in masked for piece in pieces)


def test_the_key_is_read_from_whichever_header_carries_it():
    assert masked_key_of({"x-api-key": f"sk-ant-api03-{SECRET}"}) == f"sk-ant-api03-...{SECRET[-4:]}"
    assert masked_key_of({"api-key": SECRET}) == f"...{SECRET[-4:]}"
    assert masked_key_of({"authorization": f"Bearer sk-{SECRET}", "x-api-key": "other"}) == f"sk-...{SECRET[-4:]}"
    assert masked_key_of({}) == "none"
