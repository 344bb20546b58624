"""The registry: which route is which wire API."""

import pickle

import pytest

import wire
from wire import anthropic_messages, openai_chat
from wire.call import Endpoint


@pytest.mark.parametrize(
    ("method", "path", "operation", "api_type"),
    [
        ("POST", "/v1/chat/completions", "chat", "chat_completions"),
        ("POST", "/openai/v1/chat/completions?api-version=1", "chat", "chat_completions"),
        ("POST", "/v1/chat/completions/", "chat", "chat_completions"),
        ("POST", "/v1/responses", "chat", "responses"),
        ("POST", "/v1/completions", "text_completion", "completions"),
        ("POST", "/v1/embeddings", "embeddings", "embeddings"),
        ("POST", "/api/v1/chat/completions", "chat", "chat_completions"),
        ("GET", "/v1/chat/completions", None, None),
        ("POST", "/v1/models", None, None),
        ("POST", "/v1/chat/completions/abc/messages", None, None),
        ("GET", "/v1/responses/resp_123", None, None),
        ("POST", "/v1/messages", "chat", "messages"),
        ("POST", "/v1/messages?beta=true", "chat", "messages"),  # what Claude Code sends
        ("POST", "/anthropic/v1/messages", "chat", "messages"),  # DeepSeek's Anthropic-compatible path
        ("POST", "/v1/messages/count_tokens", None, None),  # not inference
        ("POST", "/v1/messages/batches", None, None),
        ("GET", "/v1/messages/batches/msgbatch_1/results", None, None),
        ("POST", "/v1/threads/thread_1/messages", None, None),  # OpenAI Assistants: not Anthropic's
        ("GET", "/api/claude_code/policy_limits", None, None),
    ],
)
def test_endpoints_are_classified(method, path, operation, api_type):
    endpoint = wire.endpoint_for(method, path)
    assert (endpoint.operation, endpoint.api.name) == (operation, api_type) if endpoint else operation is None


def test_azure_deployment_paths_name_the_deployment_and_api_version():
    endpoint = wire.endpoint_for("POST", "/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21")
    assert endpoint == Endpoint(openai_chat.API, "my-gpt4o", "2024-10-21", False)
    v1 = wire.endpoint_for("POST", "/openai/v1/embeddings")
    assert v1 is not None and v1.azure_v1 and v1.deployment is None


def test_every_api_has_a_distinct_name_and_comes_back_from_a_pickle_as_itself():
    apis = wire.REGISTRY.apis()
    assert len({api.name for api in apis}) == len(apis)
    for api in apis:
        assert pickle.loads(pickle.dumps(api)) is api
    assert wire.endpoint_for("POST", "/v1/messages") == Endpoint(anthropic_messages.API)
