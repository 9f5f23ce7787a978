"""Request bodies the gateway accepts, validated before anything reaches an instance.

Only fields that llama-cpp-python's server handles are forwarded; unknown fields are
dropped (OpenAI clients add optional ones freely). Ranges follow the OpenAI API
reference; anything outside them is the client's error (400), never an instance crash.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

MAX_STOP_SEQUENCES = 4
MAX_PROMPT_CHARS = 200_000

StopText = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class SamplingFields(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    min_tokens: int | None = Field(default=None, ge=0)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0, le=1000)
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    repeat_penalty: float | None = Field(default=None, ge=0.0, le=10.0)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    stream: bool = False
    stop: StopText | list[StopText] | None = Field(default=None)
    logit_bias: dict[str, float] | None = None
    user: str | None = Field(default=None, max_length=256)

    @field_validator("stop")
    @classmethod
    def _few_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences")
        return value

    @field_validator("logit_bias")
    @classmethod
    def _token_ids(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return value
        if len(value) > 1024:
            raise ValueError("at most 1024 logit_bias entries")
        for key, bias in value.items():
            if not key.isdigit() or len(key) > 9:
                raise ValueError(f"logit_bias keys must be token ids, got {key!r}")
            if not -100.0 <= bias <= 100.0:
                raise ValueError("logit_bias values must be within [-100, 100]")
        return value


class CompletionRequest(SamplingFields):
    prompt: (
        Annotated[str, StringConstraints(max_length=MAX_PROMPT_CHARS)]
        | Annotated[
            list[Annotated[str, StringConstraints(max_length=MAX_PROMPT_CHARS)]],
            Field(max_length=1),
        ]
    ) = ""
    echo: bool | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant"]
    content: Annotated[str, StringConstraints(max_length=MAX_PROMPT_CHARS)]


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
