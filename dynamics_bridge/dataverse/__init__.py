"""Dataverse Web API: auth (msal), client (requests + tenacity), $batch, error classification."""

from __future__ import annotations
