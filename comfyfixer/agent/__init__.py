"""The Qwen agent: an LLM over an OpenAI-compatible API that searches with the resolver tools, and the
LLM verification pass over downloaded batches. Nothing here imports `openai` until a client is built.

What the pipeline uses:
    status = check_endpoint(settings)                        # once per run; status.notice() to show
    agent = build_agent(settings, finder, status=status)     # None: direct sources only
    resolution = agent.search(model, prior)                  # for not_found / ambiguous models
    reviewer = build_reviewer(settings, status=status)       # None: deterministic checks only
    verdicts = reviewer.review(reports)                      # after every 6th download; LLMError if down
"""

from comfyfixer.agent.build import build_agent, build_reviewer
from comfyfixer.agent.client import ChatClient, make_openai_client
from comfyfixer.agent.doctor import EndpointStatus, check_endpoint
from comfyfixer.agent.review import Reviewer
from comfyfixer.agent.search import Agent, AgentLimits
from comfyfixer.retry import RetryPolicy

__all__ = [
    "Agent",
    "AgentLimits",
    "ChatClient",
    "EndpointStatus",
    "RetryPolicy",
    "Reviewer",
    "build_agent",
    "build_reviewer",
    "check_endpoint",
    "make_openai_client",
]
