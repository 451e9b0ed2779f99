"""The config file: loading, problems with key paths, path resolution, docs."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

from gatewayd.config import (
    CertSuite,
    Config,
    ConfigError,
    PortConfig,
    Problem,
    default_config,
    load_config,
    resolve_device,
)
from gatewayd.config.reference import config_reference
from gatewayd.service.checkconfig import check_config

REPO = Path(__file__).resolve().parents[1]


def write_config(folder: Path, text: str, name: str = "gatewayd.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    return [str(problem) for problem in raised.value.problems]


def write_suite(folder: Path, ca: trustme.CA, identity: str, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    leaf = ca.issue_cert(identity)
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    leaf.cert_chain_pems[0].write_to_path(str(folder / f"{name}.pem"))
    leaf.private_key_pem.write_to_path(str(folder / f"{name}.key"))
    os.chmod(folder / f"{name}.key", 0o600)


PORT = """
[[port]]
name = "mcu"
device = "/dev/serial0"
"""


@pytest.fixture
def cert_folder(tmp_path: Path) -> Path:
    ca = trustme.CA()
    write_suite(tmp_path / "certs", ca, "client.example", "client")
    write_suite(tmp_path / "certs", ca, "localhost", "server")
    return tmp_path / "certs"


def test_valid_config_loads(tmp_path: Path, cert_folder: Path) -> None:
    path = write_config(
        tmp_path,
        """
[[port]]
name = "mcu"
device = "/dev/serial0"
baudrate = 921600
bytesize = 7
parity = "E"
stopbits = 1.5
rtscts = true
dialect = "ameba"

[[port]]
name = "second"
device = "socket://localhost:7000"

[certs.client.0]
ca = "certs/ca.pem"
cert = "certs/client.pem"
key = "certs/client.key"

[certs.server.1]
cert = "certs/server.pem"
key = "certs/server.key"

[log]
level = "debug"
format = "json"
""",
    )
    config = load_config(path)

    assert config.source == path
    first, second = config.ports
    assert first == PortConfig(
        name="mcu",
        device="/dev/serial0",
        baudrate=921600,
        bytesize=7,
        parity="E",
        stopbits=1.5,
        rtscts=True,
        dialect="ameba",
    )
    assert (second.device, second.baudrate, second.dialect) == (
        "socket://localhost:7000",
        115200,
        "esp-at",
    )
    assert [port.name for port in config.ports] == ["mcu", "second"]
    assert config.certs.client == {
        0: CertSuite(
            ca=cert_folder / "ca.pem",
            cert=cert_folder / "client.pem",
            key=cert_folder / "client.key",
        )
    }
    assert config.certs.server[1].ca is None
    assert config.certs.server[1].key == cert_folder / "server.key"
    assert (config.log.level, config.log.format) == ("debug", "json")
    assert check_config(path) == ([], [])


def test_models_are_frozen(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, PORT))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.ports[0].baudrate = 9600  # type: ignore[misc]


def test_default_file_loads() -> None:
    path = REPO / "config" / "gatewayd.toml"
    config = load_config(path)

    assert [(port.name, port.dialect, port.baudrate) for port in config.ports] == [
        ("mcu", "esp-at", 115200)
    ]
    assert config.ports[0].device == f"pty:{REPO}/ttyAT0"
    assert config.ports == default_config(REPO).ports
    assert check_config(path) == ([], [])


def test_wrong_type_is_one_problem_with_its_key_path(tmp_path: Path) -> None:
    path = write_config(tmp_path, PORT + 'baudrate = "115200"\n')
    assert problems_of(path) == [
        f"{path}: port[0].baudrate: Input should be a valid integer (got '115200')"
    ]


def test_unknown_key_is_one_problem_with_its_key_path(tmp_path: Path) -> None:
    path = write_config(tmp_path, PORT + "speed = 9600\n")
    assert problems_of(path) == [f"{path}: port[0].speed: unknown key"]


def test_missing_certificate_file_is_one_problem_with_its_key_path(tmp_path: Path) -> None:
    path = write_config(tmp_path, PORT + '[certs.client.1]\nca = "certs/ca.pem"\n')
    assert problems_of(path) == [
        f"{path}: certs.client.1.ca: file not found: {tmp_path / 'certs' / 'ca.pem'}"
    ]


@pytest.mark.parametrize(("line", "message"), [
    # A number of seconds is a TOML number: neither a string nor a boolean.
    ('boot_time = "0.5"', "port[0].boot_time: Input should be a valid number (got '0.5')"),
    ("ws_reconnect_interval = true",
     "port[0].ws_reconnect_interval: Input should be a valid number (got True)"),
    ("boot_time = 11", "port[0].boot_time: Input should be less than or equal to 10 (got 11)"),
    ("bytesize = true", "port[0].bytesize: Input should be a number, not a boolean"),
    ("bytesize = 9", "port[0].bytesize: Input should be 5, 6, 7 or 8 (got 9)"),
    ('parity = "X"', "port[0].parity: Input should be 'N', 'E', 'O', 'M' or 'S' (got 'X')"),
    ('dialect = ""', "port[0].dialect: String should match pattern '^[a-z0-9][a-z0-9-]*$'"
     " (got '')"),
    ('wssrv_token = "short"',
     "port[0].wssrv_token: String should have at least 16 characters (got 'short')"),
    ('wifi_mac = "00:11"',
     "port[0].wifi_mac: String should match pattern '^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$'"
     " (got '00:11')"),
    ("server_allow = \"10.0.0.0/8\"", "port[0].server_allow: Input should be an array"),
    ("server_allow = [8]", "port[0].server_allow[0]: Input should be a valid string (got 8)"),
    ("wifi_networks = [{}]", "port[0].wifi_networks[0].ssid: required key is missing"),
    ("wifi_networks = [1]", "port[0].wifi_networks[0]: Input should be a table"),
])
def test_type_and_bound_messages(tmp_path: Path, line: str, message: str) -> None:
    path = write_config(tmp_path, PORT + line + "\n")
    assert problems_of(path) == [f"{path}: {message}"]


def test_paths_and_header_values_say_what_they_take(tmp_path: Path) -> None:
    path = write_config(tmp_path, PORT + """
[control]
socket = 7

[[route]]
match = "ws://a.example/*"
headers = { X-One = 1, X-Two = { path = "t" } }
""")
    assert problems_of(path) == [
        f"{path}: control.socket: Input should be a path string (got 7)",
        f"{path}: route[0].headers.X-One: Input should be a string or a table (got 1)",
        f"{path}: route[0].headers.X-Two.file: required key is missing",
        f"{path}: route[0].headers.X-Two.path: unknown key",
    ]


def test_a_folder_where_a_file_belongs_is_named_as_such(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    path = write_config(tmp_path, PORT + """
[[route]]
match = "ws://a.example/*"
to = "wss://b.example/"
ca = "certs"

[certs.client.0]
ca = "certs"
""")
    assert problems_of(path) == [
        f"{path}: certs.client.0.ca: not a regular file: {tmp_path / 'certs'}",
        f"{path}: route[0].ca: not a regular file: {tmp_path / 'certs'}",
    ]


def test_sections_built_in_python_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="baudrate: Input should be greater than 0"):
        PortConfig(name="cli", device="/dev/ttyS0", baudrate=0)
    with pytest.raises(ValueError, match="a certificate suite needs at least one of"):
        CertSuite()


def test_every_problem_is_reported_on_its_own_line(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        PORT
        + """
rtscts = 1
stopbits = true

[[port]]
device = "socket://localhost"

[certs.server.1]
key = "nowhere.key"

[logging]
level = "info"
""",
    )
    assert problems_of(path) == [
        f"{path}: port[0].stopbits: Input should be a number, not a boolean",
        f"{path}: port[0].rtscts: Input should be a valid boolean (got 1)",
        f"{path}: port[1].name: required key is missing",
        f"{path}: port[1].device: 'socket://localhost' should be socket://host:port",
        f"{path}: certs.server.1.key: file not found: {tmp_path / 'nowhere.key'}",
        f"{path}: logging: unknown key",
    ]


def test_toml_syntax_error(tmp_path: Path) -> None:
    path = write_config(tmp_path, PORT + "baudrate = \n")
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}: (toml): ")
    assert "line 5" in problem
    assert "\n" not in problem


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    assert problems_of(path) == [f"{path}: cannot read: No such file or directory"]


def test_source_is_not_a_toml_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'source = "/etc/passwd"\n' + PORT)
    assert problems_of(path) == [f"{path}: source: unknown key"]


def test_at_least_one_port(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[log]\nlevel = "info"\n')
    # The message names the other way to give a port (issue: it once said only
    # "required key is missing").
    message = "no [[port]] table: add one, or give the port with --device"
    assert problems_of(path) == [f"{path}: port: {message}"]
    path = write_config(tmp_path, "port = []\n")
    assert problems_of(path) == [f"{path}: port: {message}"]


def test_a_file_without_ports_is_valid_when_the_command_line_gives_one(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[log]\nlevel = "debug"\n[control]\nsocket = "ctl.sock"\n')
    config = load_config(path, need_ports=False)
    assert (config.ports, config.log.level) == ((), "debug")
    assert config.control.socket == tmp_path / "ctl.sock"


def test_port_must_be_an_array_of_tables(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[port]\nname = "mcu"\ndevice = "/dev/serial0"\n')
    assert problems_of(path) == [f"{path}: port: Input should be an array"]


def test_duplicate_port_names_rejected(tmp_path: Path) -> None:
    path = write_config(tmp_path, PORT + '[[port]]\nname = "mcu"\ndevice = "/dev/ttyUSB0"\n')
    assert problems_of(path) == [f"{path}: port: port[1] has the same name as port[0]: 'mcu'"]


def test_duplicate_port_devices_rejected(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        '[[port]]\nname = "a"\ndevice = "serial0"\n[[port]]\nname = "b"\ndevice = "x/../serial0"\n',
    )
    assert problems_of(path) == [
        f"{path}: port: port[1] has the same device as port[0]: '{tmp_path}/serial0'"
    ]


@pytest.mark.parametrize(
    ("index", "message"),
    [
        ("abc", "certificate suite index must be a non-negative integer (0, 1, 2, …), got 'abc'"),
        ("-1", "certificate suite index must be a non-negative integer (0, 1, 2, …), got '-1'"),
        ("01", "certificate suite index must be a non-negative integer (0, 1, 2, …), got '01'"),
    ],
)
def test_suite_index_must_be_a_non_negative_integer(
    tmp_path: Path, cert_folder: Path, index: str, message: str
) -> None:
    path = write_config(tmp_path, PORT + f'[certs.client."{index}"]\nca = "certs/ca.pem"\n')
    assert problems_of(path) == [f"{path}: certs.client.{index}: {message}"]


def test_suite_needs_a_file_and_a_cert_for_its_key(tmp_path: Path, cert_folder: Path) -> None:
    path = write_config(
        tmp_path, PORT + '[certs.client.1]\n[certs.server.2]\nkey = "certs/server.key"\n'
    )
    assert problems_of(path) == [
        f"{path}: certs.client.1: a certificate suite needs at least one of ca, cert, key",
        f"{path}: certs.server.2: key is set but cert is not",
    ]


def test_relative_paths_resolve_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc" / "gatewayd"
    write_suite(folder / "certs", trustme.CA(), "localhost", "server")
    path = write_config(
        folder,
        """
[[port]]
name = "pty"
device = "pty:../run/ttyAT0"

[[port]]
name = "plain"
device = "dev/ttyS1"

[[port]]
name = "absolute"
device = "pty:/run/gatewayd/ttyAT1"

[[port]]
name = "tcp"
device = "socket://192.0.2.1:4000"

[certs.server.3]
ca = "certs/ca.pem"
cert = "./certs/../certs/server.pem"
key = "certs/server.key"
""",
    )
    monkeypatch.chdir(tmp_path)

    config = load_config(path.relative_to(tmp_path))

    assert [port.device for port in config.ports] == [
        f"pty:{tmp_path}/etc/run/ttyAT0",
        f"{folder}/dev/ttyS1",
        "pty:/run/gatewayd/ttyAT1",
        "socket://192.0.2.1:4000",
    ]
    assert config.certs.server[3] == CertSuite(
        ca=folder / "certs/ca.pem",
        cert=folder / "certs/server.pem",
        key=folder / "certs/server.key",
    )
    assert config.source == path


def test_ports_built_in_python_resolve_against_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    port = PortConfig(name="cli", device="pty:ttyAT0", dialect="ameba", baudrate=9600)
    assert port.device == f"pty:{tmp_path}/ttyAT0"
    config = Config(ports=(port,))
    assert config.ports == (port,)


@pytest.mark.parametrize(
    ("device", "resolved"),
    [
        ("pty:ttyAT0", "pty:/base/ttyAT0"),
        ("pty:../ttyAT0", "pty:/ttyAT0"),
        ("pty:/run/ttyAT0", "pty:/run/ttyAT0"),
        ("/dev/serial0", "/dev/serial0"),
        ("ttyUSB0", "/base/ttyUSB0"),
        ("socket://localhost:7000", "socket://localhost:7000"),
        ("rfc2217://host:2217", "rfc2217://host:2217"),
    ],
)
def test_resolve_device(device: str, resolved: str) -> None:
    assert resolve_device(device, "/base") == resolved


def test_problem_is_one_line() -> None:
    problem = Problem("config/x.toml", "port[0].baudrate", "Input should be\na valid integer")
    assert str(problem) == "config/x.toml: port[0].baudrate: Input should be a valid integer"


def test_check_config_reports_key_mismatch(tmp_path: Path) -> None:
    ca = trustme.CA()
    write_suite(tmp_path / "a", ca, "a.example", "leaf")
    write_suite(tmp_path / "b", ca, "b.example", "leaf")
    path = write_config(
        tmp_path, PORT + '[certs.client.1]\ncert = "a/leaf.pem"\nkey = "b/leaf.key"\n'
    )
    errors, warnings = check_config(path)
    assert [str(error) for error in errors] == [
        f"{path}: certs.client.1.key: {tmp_path}/b/leaf.key does not match cert"
        f" {tmp_path}/a/leaf.pem"
    ]
    assert warnings == []


def test_check_config_warns_about_a_world_readable_key(tmp_path: Path, cert_folder: Path) -> None:
    os.chmod(cert_folder / "server.key", 0o644)
    path = write_config(
        tmp_path, PORT + '[certs.server.1]\ncert = "certs/server.pem"\nkey = "certs/server.key"\n'
    )
    errors, warnings = check_config(path)
    assert errors == []
    assert [str(warning) for warning in warnings] == [
        f"{path}: certs.server.1.key: key file {cert_folder}/server.key is accessible by others"
        " (mode 0644); run chmod o-rwx on it"
    ]


def test_check_config_reports_load_problems_as_errors(tmp_path: Path) -> None:
    path = write_config(tmp_path, PORT + "speed = 1\n")
    errors, warnings = check_config(path)
    assert [str(error) for error in errors] == [f"{path}: port[0].speed: unknown key"]
    assert warnings == []


def test_check_config_reports_a_file_that_is_not_pem(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    path = write_config(tmp_path, PORT + '[certs.client.0]\nca = "ca.pem"\n')
    errors, _ = check_config(path)
    assert [str(error) for error in errors] == [
        f"{path}: certs.client.0.ca: no PEM certificate in {tmp_path}/ca.pem"
    ]


def test_docs_match_the_models() -> None:
    assert (REPO / "docs" / "config.md").read_text() == config_reference()


def test_reference_from_the_command_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gatewayd.config", "--reference"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == config_reference()
    assert "`[certs.client.N]`" in result.stdout
    assert "<pki_number>" in result.stdout


@pytest.mark.parametrize("listen, message", [
    ("0.0.0.0:99999", "port '99999' of '0.0.0.0:99999' is not in 0..65535"),
    ("127.0.0.1:-1", "port '-1' of '127.0.0.1:-1' is not in 0..65535"),
    ("127.0.0.1", "'127.0.0.1' should be host:port (127.0.0.1:9464, [::1]:9464)"),
    (":9464", "':9464' should be host:port (127.0.0.1:9464, [::1]:9464)"),
    ("::1:9464", "IPv6 address '::1' needs brackets: [::1]:9464"),
    ("[::g]:9464", "[::g] is not an IPv6 address"),
    ("300.1.1.1:9464", "'300.1.1.1' is not an IPv4 address"),
    ("bad_host:9464", "'bad_host' is not a host name or address"),
    ("127.0.0.1:94x", "port '94x' of '127.0.0.1:94x' is not in 0..65535"),
])
def test_metrics_listen_is_checked(tmp_path: Path, listen: str, message: str) -> None:
    path = write_config(tmp_path, PORT + f'[metrics]\nlisten = "{listen}"\n')
    assert problems_of(path) == [f"{path}: metrics.listen: {message}"]


@pytest.mark.parametrize("listen, address", [
    ("127.0.0.1:9464", ("127.0.0.1", 9464)), ("[::1]:1", ("::1", 1)),
    ("localhost:65535", ("localhost", 65535)), ("metrics.lan.:80", ("metrics.lan.", 80)),
    ("127.0.0.1:0", ("127.0.0.1", 0)),
])
def test_metrics_listen_accepted(tmp_path: Path, listen: str, address: tuple[str, int]) -> None:
    path = write_config(tmp_path, PORT + f'[metrics]\nlisten = "{listen}"\n')
    assert load_config(path).metrics.address == address


@pytest.mark.parametrize("bind, message", [
    ("192.168.1.300", "'192.168.1.300' is not an IP address"),
    ("fe80::1%", "'fe80::1%' is not an IP address"),
    ("::g", "'::g' is not an IP address"),
    ("eth0 ", "'eth0 ' is neither an IP address nor an interface name (at most 15"
              " characters, no spaces, '/', ':' or '%')"),
    ("a-very-long-interface", "'a-very-long-interface' is neither an IP address nor an"
                              " interface name (at most 15 characters, no spaces, '/', ':'"
                              " or '%')"),
])
def test_server_bind_is_checked(tmp_path: Path, bind: str, message: str) -> None:
    path = write_config(tmp_path, PORT + f'server_bind = "{bind}"\n')
    assert problems_of(path) == [f"{path}: port[0].server_bind: {message}"]


@pytest.mark.parametrize("bind", ["127.0.0.1", "::1", "fe80::1%eth0", "eth0", "wlan0", "br-lan"])
def test_server_bind_accepted(tmp_path: Path, bind: str) -> None:
    path = write_config(tmp_path, PORT + f'server_bind = "{bind}"\n')
    assert load_config(path).ports[0].server_bind == bind


def test_ameba_command_groups(tmp_path: Path) -> None:
    path = write_config(tmp_path, PORT + 'ameba_command_groups = ["socket", "network", "dns"]\n')
    assert load_config(path).ports[0].ameba_command_groups == ("socket", "network", "dns")
    assert default_config(tmp_path).ports[0].ameba_command_groups == (
        "socket", "websocket", "network", "dns", "mdns", "sntp")
    path = write_config(tmp_path, PORT + 'ameba_command_groups = ["dns", "sntp"]\n')
    assert problems_of(path) == [
        f"{path}: port[0].ameba_command_groups: dns, sntp need `network` (options of it)"]
    path = write_config(tmp_path, PORT + 'ameba_command_groups = ["wifi"]\n')
    assert problems_of(path) == [
        f"{path}: port[0].ameba_command_groups[0]: Input should be 'socket', 'websocket',"
        " 'network', 'dns', 'mdns' or 'sntp' (got 'wifi')"]
