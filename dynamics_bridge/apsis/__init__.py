"""APSIS One: a paced, retrying REST client and the marketing-platform port it implements."""

from __future__ import annotations
