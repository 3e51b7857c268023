"""A static, serverless browser for an atlas: `neuronattack explore ATLAS --out SITE`."""

from neuronattack.explore.site import SiteOptions, build_site, explore

__all__ = ["SiteOptions", "build_site", "explore"]
