"""One front door for a whole class: a Caddy configuration that routes https://<host>/<seat>/ to each seat.

Pure and standard-library only: it also runs on the Jetstream2 gateway VM (gatewayroutes.py renders with
it there). The routes go in, the Caddyfile comes out. A seat that is not answering yet gets a page that says it
is starting (and reloads itself), not a 502; a paused seat gets a page that says when it wakes. Jupyter
checks each seat's own credential behind the gateway, which holds none.
"""
from __future__ import annotations

import html
import ipaddress
from dataclasses import dataclass

STARTING = ("Starting", "Your environment is starting. This page opens it by itself when it is ready; it takes a "
                        "minute or two.")
BAD_PATH = ("Bad address", "This address is not allowed here. Use the link on your slip, or ask your instructor.")
# Refused before any route is chosen: an encoded separator or dot, a backslash, an empty or dot segment in the path
# (never the query, where Jupyter's own ?next=%2F... lives). Caddy cleans paths before matching, so without this
# /alice/..%2fbob/ would be routed to bob's seat with alice's cookies.
UNSAFE_PATH = r"(?i)^[^?#]*(%2f|%5c|%2e|%00|\\|//|/\.\.?(/|\?|#|$))"
WELCOME = ("This is the front door of your class's environments. Use the link on your slip (or scan its QR code) "
           "to open yours; each environment has its own link.")
NO_SEAT = ("Not found", "There is no environment at this address. Check the link on your sheet, or ask your instructor.")


@dataclass(frozen=True)
class Route:
    seat: str
    upstream: str = ""  # host:port of the seat's Jupyter; empty when it is paused
    paused_until: str = ""  # for a paused seat: when it wakes ("" : when the instructor resumes it)


# The starting page asks every 5 seconds whether the seat answers yet and reloads only then: no timed refresh
# (a screen reader or a slow reader loses their place; WCAG 2.2.1), no reload loop while the seat starts.
_WAIT_SCRIPT = ("<script>setInterval(function(){fetch(location.href,{cache:'no-store',redirect:'manual'})"
                ".then(function(r){if(r.status!==503&&r.status!==502&&r.status!==504)location.reload();})"
                ".catch(function(){});},5000);</script>")


def page(title: str, text: str, refresh: bool = False) -> str:
    """A small self-contained HTML page (no outside resources, no backtick: it is quoted in the Caddyfile); with
    refresh, it reloads by itself once the address answers."""
    title, text = html.escape(title.replace("`", "'")), html.escape(text.replace("`", "'"))
    script = _WAIT_SCRIPT if refresh else ""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>'
            '<style>body{font-family:sans-serif;max-width:36em;margin:4em auto;line-height:1.5;padding:0 1em}</style>'
            f'</head><body><main><h1>{title}</h1><p role="status">{text}</p></main>{script}</body></html>')


def paused_page(route: Route) -> str:
    wakes = f"It wakes at {route.paused_until}" if route.paused_until else "It wakes when your instructor resumes it"
    return page("Paused", f"This environment is paused to save resources; your files are kept. {wakes}, "
                          "or ask your instructor.")


def is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return host == "localhost"


def _quoted(text: str) -> str:
    """A Caddyfile token in backticks: HTML pages hold quotes and braces."""
    if "`" in text:
        raise ValueError("a page may not contain a backtick")
    return f"`{text}`"


def _cel_string(text: str) -> str:
    """text inside a double-quoted CEL string (Caddy's expression matcher)."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def seat_host(seat: str, host: str) -> str:
    """A seat's own origin's host name when the class has subdomains: <seat>.<host>."""
    return f"{seat}.{host}"


def caddyfile(host: str, https_port: int, http_port: int, routes: list[Route], bind: str = "", admin: str = "",
              tls: tuple[str, str] | None = None, control: str = "", title: str = "", subdomains: bool = False) -> str:
    """The gateway's whole configuration: HTTPS for host (tls: certificate and key files; else an internal CA
    for an address, ACME for a DNS name), HTTP redirecting to it, one route per seat in roster order, and
    /coursekit/* to the control service at `control` (host:port) when there is one. With subdomains each seat is
    served only on its own origin, https://<seat>.<host>/<seat>/ (its own certificate), so no page of one seat is
    same-origin with another's; the front door's /<seat>/ then redirects there."""
    def bracketed(name: str) -> str:
        return f"[{name}]" if ":" in name and not name.startswith("[") else name
    names = [bracketed(host)] + ([seat_host(r.seat, host) for r in routes] if subdomains else [])
    port = "" if https_port == 443 else f":{https_port}"
    lines = ["{", f"\thttp_port {http_port}", f"\thttps_port {https_port}", "\tauto_https disable_redirects"]
    lines += [f"\tadmin {admin}" if admin else "\tadmin off", "\tskip_install_trust"]
    if bind:
        lines.append(f"\tdefault_bind {bind}")
    lines += ["}", "", ", ".join(f"http://{n}:{http_port}" for n in names) + " {",
              f"\tredir https://{{host}}{port}{{uri}} 308" if subdomains else f"\tredir https://{names[0]}{port}{{uri}} 308", "}", "",
              ", ".join(f"https://{n}:{https_port}" for n in names) + " {"]
    if tls:
        lines.append(f"\ttls {tls[0]} {tls[1]}")
    elif is_address(host):
        lines.append("\ttls internal")
    lines += [f'\t@unsafe expression `{{http.request.uri}}.matches("{_cel_string(UNSAFE_PATH)}")`', "\thandle @unsafe {",
              '\t\theader Content-Type "text/html; charset=utf-8"', f"\t\trespond {_quoted(page(*BAD_PATH))} 400", "\t}"]
    for route in routes if subdomains else ():
        lines += [f"\t@{route.seat}.origin host {seat_host(route.seat, host)}", f"\thandle @{route.seat}.origin {{",
                  f"\t\thandle /{route.seat}/* {{", *_seat_handler(route, "\t\t\t"), "\t\t}",
                  "\t\thandle {", f"\t\t\tredir * /{route.seat}/ 302", "\t\t}", "\t}"]
    if control:
        lines += ["\thandle /coursekit/* {", f"\t\treverse_proxy {control}", "\t}"]
    lines += ["\thandle / {", '\t\theader Content-Type "text/html; charset=utf-8"',
              f"\t\trespond {_quoted(page(title or 'Your class', WELCOME))} 200", "\t}"]
    for route in routes:
        lines += [f"\t@{route.seat} path /{route.seat} /{route.seat}/*", f"\thandle @{route.seat} {{"]
        if subdomains:  # the front door never serves a seat: it sends the browser to the seat's own origin
            lines.append(f"\t\tredir https://{seat_host(route.seat, host)}{port}{{uri}} 302")
        else:
            lines += [f"\t\tredir /{route.seat} /{route.seat}/", *_seat_handler(route, "\t\t")]
        lines.append("\t}")
    lines += ["\thandle {", '\t\theader Content-Type "text/html; charset=utf-8"', f"\t\trespond {_quoted(page(*NO_SEAT))} 404", "\t}"]
    lines += ["\thandle_errors {", "\t\t@down expression `{err.status_code} in [502, 503, 504]`", "\t\thandle @down {",
              '\t\t\theader Content-Type "text/html; charset=utf-8"', f"\t\t\trespond {_quoted(page(*STARTING, refresh=True))} 503",
              "\t\t}", "\t}", "}", ""]
    return "\n".join(lines)


def _seat_handler(route: Route, indent: str) -> list[str]:
    """Proxy to the seat, or its paused page."""
    if route.upstream:
        return [f"{indent}reverse_proxy {route.upstream}"]
    return [f'{indent}header Content-Type "text/html; charset=utf-8"', f"{indent}respond {_quoted(paused_page(route))} 503"]
