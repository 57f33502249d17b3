from jupyter_containers.images.hostconfig import CA_CANDIDATES, find_ca_bundle, pip_index_settings, proxy_build_args


def test_proxy_args_keep_both_cases_and_skip_unset():
    args = proxy_build_args({"HTTPS_PROXY": "http://p:3128", "no_proxy": "localhost", "PATH": "/bin"})
    assert args == {"HTTPS_PROXY": "http://p:3128", "no_proxy": "localhost"}


def test_index_settings_from_pip_config_mirror_only_http_indexes(tmp_path):
    # given a pip.conf with a remote index, a local one and a trusted host
    conf = tmp_path / "pip.conf"
    conf.write_text(
        "[global]\nindex-url = https://mirror.example/simple\n"
        "extra-index-url = file:///opt/local https://extra.example/simple\ntrusted-host = mirror.example\n"
        "find-links = /opt/wheels\n"
    )
    # then only what exists off the host is mirrored, in uv's names
    assert pip_index_settings({}, [conf]) == {
        "index-url": "https://mirror.example/simple",
        "extra-index-url": ["https://extra.example/simple"],
        "allow-insecure-host": ["mirror.example"],
    }


def test_environment_overrides_config(tmp_path):
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = https://a.example/simple\n")
    assert pip_index_settings({"PIP_INDEX_URL": "https://b.example/simple"}, [conf]) == {
        "index-url": "https://b.example/simple"
    }


def test_no_settings_no_config(tmp_path):
    assert pip_index_settings({}, []) == {}


def test_ca_bundle_prefers_the_variable_the_host_uses(tmp_path):
    bundle = tmp_path / "corp.pem"
    bundle.write_text("x")
    assert find_ca_bundle({"SSL_CERT_FILE": str(bundle)}) == bundle
    fallback = find_ca_bundle({"SSL_CERT_FILE": str(tmp_path / "missing")})
    assert fallback is None or str(fallback) in CA_CANDIDATES
