"""The pages people use, served by `kagi cloud serve` beside the JSON API: the drivers' phone site
(SPEC §6, `cloud.web.phone`) and the operator console (SPEC §7).

Server-rendered Jinja2 templates with a little plain JavaScript for the live parts; no build
step, the templates and static files ship in the package. Every page goes through the same
service (`cloud.service.Cloud`) and the same authorisation as the API. Sessions, CSRF and the
languages are in `cloud.web.session` and `cloud.web.i18n`.
"""
