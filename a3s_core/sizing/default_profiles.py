"""Built-in model profile sources (knowledge base, local directory, Hugging Face Hub).

Placeholder until the sizing work lands: answers nothing, so the hook falls through."""

from __future__ import annotations
