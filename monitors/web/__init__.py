"""The dashboard and its JSON API: login, roles, pages, served by the engine's HTTP app."""
