"""Small template helpers of the portal: Bootstrap form widgets, progress bar widths, query strings,
role labels."""

from __future__ import annotations

from typing import Any

from django import forms, template
from django.http import QueryDict
from django.utils.translation import gettext as _

from tenancy.models import DomainRoleKind, ProjectRole
from tenancy.permissions import can

register = template.Library()

_CHECK_WIDGETS = (forms.CheckboxInput, forms.RadioSelect, forms.CheckboxSelectMultiple)


@register.filter
def is_checkbox(field: forms.BoundField) -> bool:
    return isinstance(field.field.widget, forms.CheckboxInput)


@register.filter
def bs(field: forms.BoundField, unlabeled: bool = False) -> str:
    """Render a form field's widget with Bootstrap classes (and `is-invalid` on errors)."""
    widget = field.field.widget
    if isinstance(widget, _CHECK_WIDGETS):
        css = "form-check-input"
    elif isinstance(widget, forms.Select):
        css = "form-select"
    else:
        css = "form-control"
    if field.errors:
        css += " is-invalid"
    attrs: dict[str, Any] = {"class": f"{widget.attrs.get('class', '')} {css}".strip()}
    if unlabeled and not widget.attrs.get("placeholder") and not isinstance(widget, _CHECK_WIDGETS):
        attrs["placeholder"] = field.label
    return field.as_widget(attrs=attrs)


@register.filter
def bar_width(percent: Any) -> str:
    """The class that gives a progress bar its width, `bar-w-0` … `bar-w-100` (in
    static/css/portal.css): the Content-Security-Policy allows no style="width: …" attribute."""
    try:
        value = round(float(percent))
    except (TypeError, ValueError, OverflowError):
        value = 0
    return f"bar-w-{min(100, max(0, value))}"


@register.simple_tag(takes_context=True)
def query(context: template.Context, **changes: Any) -> str:
    """The current query string with some parameters replaced (for pagination links)."""
    request = context.get("request")
    params = request.GET.copy() if request is not None else QueryDict(mutable=True)
    for key, value in changes.items():
        if value in (None, ""):
            params.pop(key, None)
        else:
            params[key] = value
    encoded = params.urlencode()
    return f"?{encoded}" if encoded else "?"


@register.filter
def project_role_label(role: str) -> str:
    try:
        return str(ProjectRole(role).label)
    except ValueError:
        return role


@register.filter
def domain_role_label(role: str) -> str:
    try:
        return str(DomainRoleKind(role).label)
    except ValueError:
        return role


@register.simple_tag(takes_context=True)
def may(context: template.Context, action: str, obj: Any = None) -> bool:
    """`{% may "project.manage" project as ok %}`: ask tenancy.permissions from a template."""
    request = context.get("request")
    user = getattr(request, "user", None)
    return bool(user is not None and can(user, action, obj))


@register.filter
def result_badge(result: str) -> str:
    return {
        "created": "success",
        "added": "primary",
        "existing": "secondary",
        "error": "danger",
    }.get(result, "light")


@register.filter
def result_label(result: str) -> str:
    labels = {
        "created": _("created"),
        "added": _("added"),
        "existing": _("already there"),
        "error": _("error"),
    }
    return labels.get(result, result)
