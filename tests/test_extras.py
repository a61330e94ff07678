from hpn.extras import extra_packages, install_hint


def test_install_hints_name_the_extra_and_its_packages_never_an_index_project():
    assert extra_packages("data") == [
        "mlxtend>=0.23",
        "pillow>=10",
        "matplotlib>=3.7",
        "fonttools>=4.40",
    ]
    hint = install_hint("tensorboard")
    assert (
        hint
        == "pip install -e \".[tensorboard]\" in the hpn source folder, or pip install 'tensorboard>=2.14'"
    )
    assert '"hpn[' not in hint
