"""Log formats: text by default, JSON objects with the record's fields, chosen by flag, key or variable."""

from __future__ import annotations

import datetime
import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagesync import logs
from imagesync.cli import SUBCOMMANDS, build_parser
from imagesync.config import ConfigError, load_config
from tests.jsonlogs import records


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger whose records go through a stream, as the root handler writes them."""
    stream = io.StringIO()
    logger = logging.getLogger("tests.logs")
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.handlers[-1].setFormatter(logs.formatter(logs.JSON))
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def test_json_record_has_time_level_logger_message_then_fields(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    logger.warning(
        "pull of %s on %s failed: %s",
        "nvcr.io/nvidia/cuda:12",
        "gpu-1",
        "ErrImagePull",
        extra={
            "node": "gpu-1",
            "image": "nvcr.io/nvidia/cuda:12",
            "reason": "ErrImagePull",
            "since": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        },
    )
    [record] = records(stream.getvalue())
    assert record == {
        "time": record["time"],
        "level": "WARNING",
        "logger": "tests.logs",
        "message": "pull of nvcr.io/nvidia/cuda:12 on gpu-1 failed: ErrImagePull",
        "node": "gpu-1",
        "image": "nvcr.io/nvidia/cuda:12",
        "reason": "ErrImagePull",
        "since": "2026-01-02T03:04:05+00:00",
    }


def test_json_time_is_utc(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0, tzinfo=None)
    logger.info("now")
    [record] = records(stream.getvalue())
    logged = datetime.datetime.strptime(record["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert before <= logged <= before + datetime.timedelta(seconds=5)


def test_json_traceback_stays_on_one_line(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("pass failed")
    [record] = records(stream.getvalue())
    assert record["level"] == "ERROR"
    assert "RuntimeError: boom" in record["exc_info"]
    assert stream.getvalue().count("\n") == 1


def test_text_format_is_unchanged() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.formatter(logs.TEXT))
    record = logging.LogRecord("webhook", logging.INFO, __file__, 1, "hello %s", ("x",), None)
    handler.emit(record)
    assert stream.getvalue().endswith(" INFO webhook: hello x\n")


def test_the_key_and_its_variable_choose_the_format(tmp_path: Path) -> None:
    assert load_config(environ={}).log_format == "text"
    config_file = tmp_path / "config.yaml"
    config_file.write_text("logFormat: json\n")
    assert load_config(str(config_file), environ={}).log_format == "json"
    assert load_config(environ={"IMAGE_SYNC_LOG_FORMAT": "json"}).log_format == "json"
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        load_config(environ={"IMAGE_SYNC_LOG_FORMAT": "xml"})


@pytest.mark.parametrize("command", ["webhook", "prefetcher", "sim"])
def test_long_running_subcommands_take_the_flag(command: str) -> None:
    required = {"webhook": ["--cert", "c", "--key", "k"]}.get(command, [])
    args = build_parser().parse_args([command, "--log-format", "json", *required])
    assert args.log_format == "json"
    assert build_parser().parse_args([command, *required]).log_format is None
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--log-format", "xml", *required])


def test_every_subcommand_takes_the_flag() -> None:
    parser = build_parser()
    for command in SUBCOMMANDS:
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--log-format", "yaml"])
