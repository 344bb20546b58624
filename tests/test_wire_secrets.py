"""Key masking: never more than a key's scheme and its last four characters."""

import pytest

from wire import REGISTRY
from wire.bedrock_common import BEDROCK
from wire.secrets import KeyMasker

mask_api_key = REGISTRY.key_masker.mask
masked_key_of = REGISTRY.key_masker.masked_key_of

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


def test_a_credential_seen_before_is_masked_from_the_cache_the_same_way():
    """The proxy masks every metered request on mitmproxy's loop, mostly the same few keys."""
    masker = KeyMasker(["sk-proj-", "sk-"])
    first = masker.mask(f"Bearer sk-proj-{SECRET}")
    again = [masker.mask(f"Bearer sk-proj-{SECRET}") for _ in range(3)]
    assert again == [first] * 3 == [f"sk-proj-...{SECRET[-4:]}"] * 3
    assert masker.mask.cache_info().hits == 3
    assert masker.mask(f"Bearer sk-{SECRET[::-1]}") == f"sk-...{SECRET[::-1][-4:]}"


ACCESS_KEY = "AKIAZ3MHALJ7QXW2RT5N"
SIGNATURE = "a3f5c2e1d4b6978899aabbccddeeff00112233445566778899aabbccddeeff00"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD"


@pytest.mark.parametrize("scheme", ["AKIA", "ASIA"])
def test_a_sigv4_signature_is_masked_to_its_access_key_ids_scheme_and_last_four(scheme):
    key_id = scheme + ACCESS_KEY[4:]
    headers = {
        "authorization": f"AWS4-HMAC-SHA256 Credential={key_id}/20261204/us-east-1/bedrock/aws4_request, "
        f"SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature={SIGNATURE}",
        "x-amz-security-token": SESSION_TOKEN,
    }
    masked = BEDROCK.masked_key(headers, "", REGISTRY.key_masker)
    assert masked == f"{scheme}...{key_id[-4:]}"
    for secret in (key_id[4:], SIGNATURE, SESSION_TOKEN):
        assert not any(secret[i : i + 8] in masked for i in range(len(secret) - 7))


def test_two_aws_callers_get_two_masked_keys_and_bedrock_api_keys_keep_their_scheme():
    def sigv4(key_id: str) -> dict[str, str]:
        return {"authorization": f"AWS4-HMAC-SHA256 Credential={key_id}/20261204/us-east-1/bedrock/aws4_request"}

    first = BEDROCK.masked_key(sigv4("AKIAAAAAAAAAAAAA1111"), "", REGISTRY.key_masker)
    second = BEDROCK.masked_key(sigv4("AKIAAAAAAAAAAAAA2222"), "", REGISTRY.key_masker)
    assert (first, second) == ("AKIA...1111", "AKIA...2222")
    bearer = {"authorization": f"Bearer ABSK{SECRET}"}
    assert BEDROCK.masked_key(bearer, "", REGISTRY.key_masker) == f"ABSK...{SECRET[-4:]}"
