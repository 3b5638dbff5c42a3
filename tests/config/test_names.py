"""A ``NOTIFYQ_*`` name close to a setting's is taken for a misspelling of it; settings,
other programs' names and the tests' own variables are not."""

from __future__ import annotations

from pathlib import Path

from config.names import Misspelt, misspelt, misspelt_here


def test_a_misspelt_name_is_found_with_the_setting_it_meant_whatever_its_case() -> None:
    assert misspelt(["NOTIFYQ_DATABSE_URL", "notifyq_redis_uri", "NOTIFYQ_IHUYI_API_KEY"]) == [
        Misspelt("NOTIFYQ_DATABSE_URL", "NOTIFYQ_DATABASE_URL"),
        Misspelt("NOTIFYQ_IHUYI_API_KEY", "NOTIFYQ_IHUYI_APIKEY"),
        Misspelt("NOTIFYQ_REDIS_URI", "NOTIFYQ_REDIS_URL"),
    ]


def test_settings_unrelated_names_and_the_tests_own_are_left_alone() -> None:
    assert (
        misspelt(
            [
                "NOTIFYQ_DATABASE_URL",
                "notifyq_redis_url",
                "NOTIFYQ_IHUYI_CAPS",
                "NOTIFYQ_TEST_REDIS_URL",  # the tests' own Redis: 0.79 alike CAPS_REDIS_URL
                "NOTIFYQ_TEST_POSTGRES_URL",
                "NOTIFYQ_BENCH_COUNT_SQL",
                "NOTIFYQ_KEY",  # nothing close once the shared prefix is set aside
                "DATABSE_URL",
                "PATH",
            ]
        )
        == []
    )


def test_a_dotenv_file_is_read_for_names_too(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("# local\nexport NOTIFYQ_LOGLEVEL=DEBUG\nNOTIFYQ_API_KEYS=k\n")
    assert misspelt_here({"NOTIFYQ_WORKER_CONCURENCY": "8"}, env_file) == [
        Misspelt("NOTIFYQ_LOGLEVEL", "NOTIFYQ_LOG_LEVEL"),
        Misspelt("NOTIFYQ_WORKER_CONCURENCY", "NOTIFYQ_WORKER_CONCURRENCY"),
    ]
    assert misspelt_here({}, tmp_path / "absent.env") == []
