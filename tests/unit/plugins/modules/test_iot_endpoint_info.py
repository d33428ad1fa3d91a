from ansible_collections.iotfleet.aws.plugins.modules import iot_endpoint_info
from tests.unit.conftest import ACCOUNT_ID
from tests.unit.conftest import REGION


def test_reports_ats_endpoint_account_and_region(aws, run_module):
    result = run_module(iot_endpoint_info, {})

    assert result["changed"] is False
    assert result["endpoint_type"] == "iot:Data-ATS"
    assert result["endpoint_address"].endswith(f"-ats.iot.{REGION}.amazonaws.com")
    assert result["account_id"] == ACCOUNT_ID
    assert result["partition"] == "aws"
    assert result["region"] == REGION


def test_legacy_endpoint_type_is_described(aws, run_module):
    result = run_module(iot_endpoint_info, {"endpoint_type": "iot:Data"}, check_mode=True)

    assert result["endpoint_type"] == "iot:Data"
    assert "-ats." not in result["endpoint_address"]


def test_unknown_endpoint_type_names_the_option(aws, run_module):
    result = run_module(iot_endpoint_info, {"endpoint_type": "iot:Nope"}, expect_failure=True)

    assert "endpoint_type" in result["msg"]
