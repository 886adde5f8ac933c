"""Finding recipients: userLookup, user groups, organisation units and whole subtrees.

The first half pins the emulator's answers to DHIS2's (wire facts from
dhis2-core's UserLookupController, HibernateUserStore, the metadata query
engine and MessageConversationController); the second half drives
``Messenger``'s lookups, and sends to what they found, against it.

Neighbours: send and add_recipients with uids in test_sending.py; names given to
--user, --group and --org-unit(-tree), and the find and tree commands, in
test_cli.py (``TestRecipientNames``).
"""

from __future__ import annotations

import pytest

from dhis2_messages import (
    AuthenticationError,
    ConflictError,
    Messenger,
    NameMatchError,
    NotFoundError,
    OrgUnitRef,
    ResponseError,
    UserGroupRef,
    UserRef,
)
from tests.conftest import standalone_demo
from tests.emulator import (
    AMINATA,
    BADJIA,
    BO_DISTRICT,
    DISTRICT_MANAGERS,
    DISTRICT_REPORTERS,
    KENEMA,
    NGELEHUN_CHC,
    REPORTERS,
    SIA,
    SIERRA_LEONE,
)

BO_SUBTREE = {
    BO_DISTRICT,
    BADJIA,
    "vWbkYPRmKyS",  # Baoma
    NGELEHUN_CHC,
    "g8upMTyEZGZ",  # Njandama MCHP (nobody assigned)
    "EJoI3HArJ2W",  # Baoma Station CHP
}


@pytest.fixture
def get(raw_request):
    """get(path, user="alice", **params) -> requests.Response: GET /api<path>, over a real socket."""

    def get(path, user="alice", **params):
        return raw_request("GET", "/api" + path, user=user, params=params)

    return get


def names(users):
    return [u["displayName"] for u in users]


# -- the emulator: /api/userLookup ---------------------------------------------


class TestUserLookupWire:
    def test_matches_name_username_and_email_case_insensitively(self, get):
        r = get("/userLookup", query="BANDA")
        assert 200 == r.status_code
        # Ordered by surname, then first name; accents and case are different names.
        assert ["Alice Banda", "Jose Banda", "José Banda"] == names(r.json()["users"])
        assert {"id", "username", "firstName", "surname", "displayName"} == set(
            r.json()["users"][0]
        )
        by_email = get("/userLookup", query="JOSE.BANDA@").json()["users"]
        assert ["jbanda"] == [u["username"] for u in by_email]
        by_username = get("/userLookup", query="ama.sa").json()["users"]
        assert ["AMA SANKOH"] == names(by_username)

    def test_first_name_space_surname_is_one_value(self, get):
        assert ["Aminata Conteh"] == names(get("/userLookup", query="nata con").json()["users"])
        assert [] == get("/userLookup", query="conteh aminata").json()["users"]

    def test_at_most_25_in_surname_order_and_no_pager(self, get):
        body = get("/userLookup", query="chw").json()
        assert ["users"] == list(body)
        assert 25 == len(body["users"])
        surnames = [u["surname"] for u in body["users"]]
        assert surnames[:2] == ["Makeni 01", "Makeni 02"]  # Makeni before Ngelehun
        assert surnames == sorted(surnames)

    def test_like_wildcards_are_not_escaped(self, get):
        assert 25 == len(get("/userLookup", query="%").json()["users"])
        assert ["Sia Lebbie"] == names(get("/userLookup", query="s_a leb").json()["users"])

    def test_query_is_required(self, get):
        r = get("/userLookup")
        assert 400 == r.status_code
        assert r.headers["Content-Type"].startswith("text/html")

    @pytest.mark.dhis2_versions(since="2.39")
    def test_data_capture_boundary_keeps_users_of_exactly_the_callers_units(self, get):
        # alice captures for Bo District: the facility users below it are not "hers".
        r = get("/userLookup", query="a", orgUnitBoundary="data_capture")
        assert ["Alice Banda", "Dave Kamara", "Bob Mensah"] == names(r.json()["users"])

    def test_a_boundary_the_caller_has_no_units_for_filters_nothing(self, get):
        everyone = names(get("/userLookup", query="an").json()["users"])
        r = get("/userLookup", query="an", orgUnitBoundary="TEI_SEARCH")
        assert everyone == names(r.json()["users"])
        assert everyone == names(
            get("/userLookup", query="an", orgUnitBoundary="NOT_A_BOUNDARY").json()["users"]
        )

    @pytest.mark.dhis2_versions(since="2.39")
    def test_data_output_boundary_uses_view_units(self, get):
        r = get("/userLookup", user="fatmata", query="a", orgUnitBoundary="DATA_OUTPUT")
        assert ["Fatmata Sesay"] == names(r.json()["users"])

    @pytest.mark.dhis2_versions("2.38")
    def test_2_38_has_no_boundary(self, get):
        everyone = names(get("/userLookup", query="a").json()["users"])
        assert everyone == names(
            get("/userLookup", query="a", orgUnitBoundary="DATA_CAPTURE").json()["users"]
        )
        assert "Aminata Conteh" in everyone

    def test_feedback_recipients_are_the_feedback_group(self, get):
        assert ["Carol Osei"] == names(
            get("/userLookup/feedbackRecipients", query="").json()["users"]
        )
        assert [] == get("/userLookup/feedbackRecipients", query="alice").json()["users"]

    def test_feedback_recipients_without_a_group_is_e6200(self, emulator, get):
        emulator.feedback_group_uid = None
        r = get("/userLookup/feedbackRecipients", query="carol")
        assert 409 == r.status_code
        body = r.json()
        assert "Feedback message recipients user group not defined" == body["message"]
        assert "E6200" == body["errorCode"]


# -- the emulator: /api/userGroups and /api/organisationUnits --------------------


class TestMetadataListsWire:
    def test_token_filter_every_word_a_prefix(self, get):
        def found(text):
            r = get("/userGroups", filter=f"displayName:token:{text}")
            return [g["displayName"] for g in r.json()["userGroups"]]

        assert ["District Data Managers", "District Reporters"] == found("district")
        assert ["District Reporters", "Facility Reporters", "Reporters"] == found("REP")
        assert ["District Reporters"] == found("rep dist")
        assert [] == found("porters")  # a prefix of a word, not a substring

    def test_a_comma_ends_a_filter_value_on_2_42_and_later(self, emulator, get):
        r = get("/userGroups", filter="displayName:token:district, rep", fields="name")
        found = [g["name"] for g in r.json()["userGroups"]]
        if emulator.since("2.42"):  # GetObjectListParams.splitFilters: "displayName:token:district"
            assert ["District Data Managers", "District Reporters"] == found
        else:
            assert ["District Reporters"] == found

    def test_private_groups_are_hidden_by_sharing(self, get):
        def visible(user):
            r = get("/userGroups", user=user, fields="id", paging="false")
            return {g["id"] for g in r.json()["userGroups"]}

        assert DISTRICT_MANAGERS in visible("admin")
        assert DISTRICT_MANAGERS not in visible("alice")
        assert DISTRICT_MANAGERS not in visible("abu")  # a member, not the owner

    def test_pager_default_order_and_page_past_the_end(self, get):
        r = get("/userGroups", pageSize=2, fields="name")
        body = r.json()
        assert {"page": 1, "total": 6, "pageSize": 2, "pageCount": 3} == {
            k: body["pager"][k] for k in ("page", "total", "pageSize", "pageCount")
        }
        assert ["Data Managers", "District Data Managers"] == [
            g["name"] for g in body["userGroups"]
        ]
        past = get("/userGroups", page=9, pageSize=2).json()
        assert (3, []) == (past["pager"]["page"], past["userGroups"])
        empty = get("/userGroups", filter="name:eq:nothing").json()
        assert (1, 0, 0) == (
            empty["pager"]["page"],
            empty["pager"]["total"],
            empty["pager"]["pageCount"],
        )

    def test_org_unit_fields_level_path_parent(self, get):
        r = get(
            "/organisationUnits",
            filter=f"id:in:[{SIERRA_LEONE},{NGELEHUN_CHC}]",
            fields="id,displayName,level,path,parent",
        )
        units = {u["id"]: u for u in r.json()["organisationUnits"]}
        assert {
            "id": SIERRA_LEONE,
            "displayName": "Sierra Leone",
            "level": 1,
            "path": "/" + SIERRA_LEONE,
        } == units[SIERRA_LEONE]
        assert (
            f"/{SIERRA_LEONE}/{BO_DISTRICT}/{BADJIA}/{NGELEHUN_CHC}" == units[NGELEHUN_CHC]["path"]
        )
        assert {"id": BADJIA} == units[NGELEHUN_CHC]["parent"]
        assert 4 == units[NGELEHUN_CHC]["level"]

    def test_users_gte_1_means_units_with_directly_assigned_users(self, get):
        r = get(
            "/organisationUnits", filter=["users:gte:1", f"path:like:{BO_DISTRICT}"], paging="false"
        )
        ids = {u["id"] for u in r.json()["organisationUnits"]}
        assert BO_SUBTREE - {"vWbkYPRmKyS", "g8upMTyEZGZ"} == ids

    def test_path_like_is_the_whole_subtree_in_one_answer(self, get):
        r = get(
            "/organisationUnits",
            filter=f"path:like:{BO_DISTRICT}",
            fields="id,displayName,level,path",
            paging="false",
        )
        assert ["organisationUnits"] == list(r.json())
        assert BO_SUBTREE == {u["id"] for u in r.json()["organisationUnits"]}
        # Case-sensitive, and an unknown uid is an empty list, not a 404.
        assert (
            []
            == get("/organisationUnits", filter=f"path:like:{BO_DISTRICT.lower()}").json()[
                "organisationUnits"
            ]
        )
        assert 200 == get("/organisationUnits", filter="path:like:Zz0000000Zz").status_code

    def test_order_level_then_name(self, get):
        r = get(
            "/organisationUnits",
            filter="displayName:token:b",
            order=["level:asc", "name:iasc"],
            fields="displayName",
            paging="false",
        )
        assert [
            "Bo District",
            "Bombali District",
            "Badjia",
            "Baoma",
            "Bombali Sebora",
            "Baoma Station CHP",
        ] == [u["displayName"] for u in r.json()["organisationUnits"]]

    def test_an_organisation_unit_message_reaches_only_that_exact_unit(self, emulator, raw_request):
        r = raw_request(
            "POST",
            "/api/messageConversations",
            json={"subject": "s", "text": "t", "organisationUnits": [{"id": BO_DISTRICT}]},
        )
        uid = r.headers["Location"].rsplit("/", 1)[1]
        assert {"admin", "alice", "bob", "dave"} == set(emulator.conversations[uid].participants)

    def test_a_group_the_sender_cannot_see_is_not_found(self, emulator, raw_request):
        def send(auth):
            return raw_request(
                "POST",
                "/api/messageConversations",
                user=None,
                auth=auth,
                json={"subject": "s", "text": "t", "userGroups": [{"id": DISTRICT_MANAGERS}]},
            )

        assert 201 == send(("admin", "district")).status_code
        r = send(("abu", "District1#"))
        assert 404 == r.status_code
        if emulator.since("2.40"):
            expected = f"UserGroup with id {DISTRICT_MANAGERS} could not be found."
        else:
            expected = f"User Group does not exist: {DISTRICT_MANAGERS}"
        assert expected == r.json()["message"]

    def test_a_deeper_tree_can_be_grown(self, emulator, get):
        new = emulator.add_org_unit_tree(KENEMA, depth=4, children=2, users=1)
        assert 2 + 4 + 8 + 16 == len(new)
        r = get("/organisationUnits", filter=f"path:like:{KENEMA}", fields="level", paging="false")
        assert 6 == max(u["level"] for u in r.json()["organisationUnits"])


def test_seeded_world_keeps_bo_district_and_has_people_at_every_level(emulator):
    assert ["alice", "bob", "dave"] == emulator.org_units[BO_DISTRICT].members
    assert {1, 2, 3, 4} == {u.level for u in emulator.org_units.values() if u.members}
    assert any(not u.members for u in emulator.org_units.values())
    assert "aminata" in emulator.org_units[NGELEHUN_CHC].members
    assert emulator.user("aminata").uid == AMINATA
    assert emulator.user("sia").uid == SIA
    assert REPORTERS in emulator.groups and DISTRICT_REPORTERS in emulator.groups
    tree = emulator.tree_text()
    assert "  Bo District (O6uvpzGd5pu, level 2): alice, bob, dave" in tree.splitlines()


# -- the client ------------------------------------------------------------------


def sent(emulator):
    """The API requests the emulator received since the last reset."""
    return emulator.requests()


class TestLookups:
    def test_lookup_users_is_one_request_and_gives_user_refs(self, emulator, alice):
        found = alice.lookup_users("banda")
        assert [
            UserRef(id="PhzytPW3g2J", name="Alice Banda", username="alice"),
            UserRef(id="Hm2Tc8aNwBq", name="Jose Banda", username="jbanda"),
            UserRef(id="Lx9ZbhjUP6q", name="José Banda", username="jose"),
        ] == found
        [request] = sent(emulator)
        assert ("GET", "/api/userLookup", ["banda"]) == (
            request.method,
            request.path,
            request.param("query"),
        )

    def test_lookup_users_keeps_dhis2s_cap_and_order(self, alice):
        found = alice.lookup_users("chw")
        assert 25 == len(found)
        assert ["CHW Makeni 01", "CHW Makeni 02"] == [u.name for u in found[:2]]

    @pytest.mark.dhis2_versions(since="2.39")
    def test_boundary_any_case_is_sent_upper_case(self, emulator, alice):
        found = alice.lookup_users("a", boundary="data_capture")
        assert ["alice", "dave", "bob"] == [u.username for u in found]
        assert ["DATA_CAPTURE"] == sent(emulator)[0].param("orgUnitBoundary")

    def test_feedback_recipients(self, emulator, alice):
        assert ["carol"] == [u.username for u in alice.lookup_feedback_recipients("osei")]
        assert "/api/userLookup/feedbackRecipients" == sent(emulator)[0].path

    def test_no_feedback_group_is_a_conflict_that_says_what_to_do(self, emulator, alice):
        emulator.feedback_group_uid = None
        with pytest.raises(ConflictError) as caught:
            alice.lookup_feedback_recipients("carol")
        err = caught.value
        assert ("Feedback message recipients user group not defined", "E6200") == (
            err.message,
            err.error_code,
        )
        assert "Feedback recipients" in str(err)

    def test_find_user_groups_every_word_starts_a_word(self, emulator, alice):
        assert [
            UserGroupRef(id=DISTRICT_REPORTERS, name="District Reporters"),
            UserGroupRef(id="Vp8LmQ2zNcx", name="Facility Reporters"),
            UserGroupRef(id=REPORTERS, name="Reporters"),
        ] == alice.find_user_groups("rep")
        assert ["District Reporters"] == [g.name for g in alice.find_user_groups("Dist REP")]
        assert 2 == len(sent(emulator))

    def test_find_user_groups_limit_is_the_page_size(self, emulator, alice):
        assert ["District Reporters", "Facility Reporters"] == [
            g.name for g in alice.find_user_groups("rep", limit=2)
        ]
        assert ["2"] == sent(emulator)[0].param("pageSize")

    def test_a_comma_in_the_query_is_a_word_break(self, alice):
        # DHIS2 2.42+ would cut "district, rep" at the comma and match "district" only.
        assert ["District Reporters"] == [g.name for g in alice.find_user_groups("district, rep")]

    def test_find_user_groups_shows_only_what_sharing_allows(self, admin, alice):
        assert ["District Data Managers", "District Managers"] == [
            g.name for g in admin.find_user_groups("district managers")
        ]
        assert ["District Data Managers"] == [
            g.name for g in alice.find_user_groups("district managers")
        ]

    def test_find_organisation_units_higher_levels_first(self, emulator, alice):
        found = alice.find_organisation_units("b", limit=3)
        assert [("Bo District", 2), ("Bombali District", 2), ("Badjia", 3)] == [
            (u.name, u.level) for u in found
        ]
        assert f"/{SIERRA_LEONE}/{BO_DISTRICT}" == found[0].path
        assert 1 == len(sent(emulator))

    def test_subtree_is_one_request_unit_first_then_depth_first(self, emulator, alice):
        tree = alice.organisation_unit_subtree(BO_DISTRICT)
        assert [
            "Bo District",
            "Badjia",
            "Ngelehun CHC",
            "Njandama MCHP",
            "Baoma",
            "Baoma Station CHP",
        ] == [u.name for u in tree]
        assert BO_SUBTREE == {u.id for u in tree}
        assert (
            OrgUnitRef(
                id=NGELEHUN_CHC,
                name="Ngelehun CHC",
                level=4,
                path=f"/{SIERRA_LEONE}/{BO_DISTRICT}/{BADJIA}/{NGELEHUN_CHC}",
            )
            == tree[2]
        )
        [request] = sent(emulator)
        assert ([f"path:like:{BO_DISTRICT}"], ["false"]) == (
            request.param("filter"),
            request.param("paging"),
        )

    def test_subtree_of_a_record_and_of_a_leaf(self, alice):
        [bo] = alice.find_organisation_units("bo district", limit=1)
        assert BO_SUBTREE == {u.id for u in alice.organisation_unit_subtree(bo)}
        assert [NGELEHUN_CHC] == [u.id for u in alice.organisation_unit_subtree(NGELEHUN_CHC)]

    @pytest.mark.parametrize("depth", [4, 6])
    def test_subtree_is_one_request_however_deep(self, emulator, alice, depth):
        new = emulator.add_org_unit_tree(NGELEHUN_CHC, depth=depth, children=2, users=0)
        emulator.clear_log()
        tree = alice.organisation_unit_subtree(BO_DISTRICT)
        assert len(BO_SUBTREE) + len(new) == len(tree)
        assert 1 == len(sent(emulator))

    def test_unknown_unit_is_not_found(self, emulator, alice):
        with pytest.raises(NotFoundError, match="Zz0000000Zz"):
            alice.organisation_unit_subtree("Zz0000000Zz")
        assert 1 == len(sent(emulator))

    def test_lookups_need_no_authority(self, emulator):
        """aminata is an ordinary data-entry user at a facility."""
        with Messenger(emulator.url, auth=("aminata", "District1#"), retries=0) as m:
            assert m.lookup_users("sia")
            assert m.find_user_groups("data")
            assert m.find_organisation_units("sierra")
            assert len(m.organisation_unit_subtree(SIERRA_LEONE)) == len(emulator.org_units)


class TestEveryoneInADistrict:
    def test_a_facility_user_two_levels_down_gets_it_and_a_user_outside_does_not(
        self, emulator, admin, connect
    ):
        uid = admin.send(
            subject="Stock count",
            text="Please count the ORS by Friday.",
            organisation_units=admin.organisation_unit_subtree(BO_DISTRICT),
        )
        assert 2 == len(sent(emulator))
        inbox = [c.id for c in connect("aminata").list_conversations()]
        assert uid in inbox  # Ngelehun CHC, below Badjia, below Bo District
        assert uid not in [c.id for c in connect("sia").list_conversations()]  # Kenema
        assert uid not in [c.id for c in connect("fatmata").list_conversations()]  # above
        assert uid in [c.id for c in connect("alice").list_conversations()]

    def test_the_district_alone_reaches_only_its_own_users(self, admin, connect):
        uid = admin.send(subject="s", text="t", organisation_units=BO_DISTRICT)
        assert uid not in [c.id for c in connect("aminata").list_conversations()]


class TestResolve:
    """A name in, exactly one record out: the exact name wins, then a single candidate."""

    def test_the_exact_name_wins_over_names_that_contain_it(self, alice):
        assert BO_DISTRICT == alice.resolve_organisation_unit("  bo DISTRICT ").id
        assert REPORTERS == alice.resolve_user_group("reporters").id
        assert "ama" == alice.resolve_user("ama").username  # the username, not "AMA SANKOH"

    def test_a_single_candidate_is_taken(self, alice):
        assert "Facility Reporters" == alice.resolve_user_group("facility").name
        assert NGELEHUN_CHC == alice.resolve_organisation_unit("ngelehun").id

    def test_several_or_none_list_the_candidates_with_their_uids(self, alice):
        with pytest.raises(NameMatchError) as info:
            alice.resolve_user("banda")
        err = info.value
        assert ("banda", "user", False) == (err.name, err.kind, err.more)
        assert ["alice", "jbanda", "jose"] == [u.username for u in err.candidates]
        assert "PhzytPW3g2J  Alice Banda (alice)" in str(err)
        with pytest.raises(NameMatchError) as info:
            alice.resolve_organisation_unit("Port Loko")
        assert () == info.value.candidates and "no organisation unit matches" in str(info.value)

    def test_a_uid_or_a_record_needs_no_request(self, emulator, alice):
        assert UserRef(id=SIA) == alice.resolve_user(f" {SIA}\n")  # copied with spaces
        assert OrgUnitRef(id=KENEMA) == alice.resolve_organisation_unit(KENEMA)
        group = UserGroupRef(id=REPORTERS, name="Reporters")
        assert group is alice.resolve_user_group(group)
        assert [] == emulator.log


class TestWhomASendWouldReach:
    """expand_recipients: what DHIS2 delivers a send to, read before sending.

    What an ordinary user may read (dhis2-core, 2.38 to master): OrganisationUnit.getUsers
    is the JSON property ``users`` (2.39+ through UserPropertyTransformer, a fixed UserDto
    of id, code, name, displayName and username, whatever sub-fields are asked; 2.38 as
    BaseIdentifiableObject), UserGroup.getMembers likewise ``users``; the field filter
    (FieldFilterService, FieldPathHelper) checks no access on nested objects, it only
    computes their ``access``; units are no shared objects (wire.md 10.3) and a group is
    read through sharing, as the send itself looks it up (wire.md 10.5).  These users are
    the ones MessageConversationController adds to a send: ``organisationUnit.getUsers()``,
    ``userGroup.getMembers()``."""

    def test_an_ordinary_user_counts_a_district_without_sending(self, emulator, alice):
        tree = alice.organisation_unit_subtree(BO_DISTRICT)
        emulator.clear_log()
        reach = alice.expand_recipients(organisation_units=tree)
        assert 20 == len(reach) and {"alice", "bob", "aminata", "mohamed"} <= {
            u.username for u in reach
        }
        assert [u.name.casefold() for u in reach] == sorted(u.name.casefold() for u in reach)
        (request,) = emulator.log
        assert ("GET", "/api/organisationUnits") == (request.method, request.path)
        assert ["false"] == request.param("paging")
        assert [f"id:in:[{','.join(u.id for u in tree)}]"] == request.param("filter")
        uid = alice.send(subject="s", text="t", organisation_units=tree)
        participants = set(emulator.conversations[uid].participants)
        assert {u.username for u in reach} == participants  # alice, the sender, among them

    def test_users_groups_and_units_each_once(self, emulator, alice):
        sia = UserRef(id=SIA, name="Sia Lebbie", username="sia")
        reach = alice.expand_recipients(
            users=iter([sia, "PhzytPW3g2J"]), user_groups=[REPORTERS], organisation_units=[KENEMA]
        )
        assert ["Abu Jalloh", "Alice Banda", "Bob Mensah", "Sia Lebbie"] == [u.name for u in reach]
        assert 2 == len(emulator.log)  # one per kind: the users given need none
        assert [] == alice.expand_recipients(organisation_units=["fdc6uOvgoji"])  # Bombali

    def test_a_group_it_may_not_see_or_a_unit_that_does_not_exist(self, emulator, alice):
        with pytest.raises(NotFoundError, match=DISTRICT_MANAGERS):
            alice.expand_recipients(user_groups=[DISTRICT_MANAGERS])
        with pytest.raises(NotFoundError, match="Zz0000000Zz"):
            alice.expand_recipients(organisation_units=[BO_DISTRICT, "Zz0000000Zz"])

    def test_many_units_go_200_a_request(self, emulator, alice):
        emulator.add_org_unit_tree(BO_DISTRICT, depth=2, children=21, users=0)
        tree = alice.organisation_unit_subtree(BO_DISTRICT)
        emulator.clear_log()
        assert 20 == len(alice.expand_recipients(organisation_units=tree))
        sizes = [len(r.param("filter")[0].split(",")) for r in emulator.log]
        assert [200, 200, len(tree) - 400] == sizes

    def test_nothing_to_expand_is_no_request(self, emulator, alice):
        assert [] == alice.expand_recipients()
        assert [UserRef(id=SIA)] == alice.expand_recipients(users=SIA)
        assert [] == emulator.log
        with pytest.raises(ValueError):
            alice.expand_recipients(user_groups=["not a uid"])
        with pytest.raises(TypeError):
            alice.expand_recipients(organisation_units=[UserRef(id=SIA)])


class TestRecordsAsRecipients:
    def test_every_kind_of_record_where_its_uid_goes(self, emulator, admin):
        uid = admin.send(
            subject="s",
            text="t",
            users=admin.lookup_users("banda"),
            user_groups=admin.find_user_groups("district rep"),
            organisation_units=admin.find_organisation_units("kenema govt"),
        )
        assert {"admin", "alice", "jose", "jbanda", "ibrahim", "abu", "sia"} == set(
            emulator.conversations[uid].participants
        )
        body = sent(emulator)[-1].json()
        assert {"id": "PhzytPW3g2J"} in body["users"]
        sia = admin.lookup_users("sia lebbie")[0]
        admin.add_recipients(uid, users=admin.lookup_users("aminata"))
        assert "aminata" in emulator.conversations[uid].participants
        admin.mark_read(uid, user=sia)
        assert emulator.conversations[uid].participants["sia"].read
        admin.assign(uid, sia)
        assert "sia" == emulator.conversations[uid].assignee.username
        assert uid in admin.delete_conversations(uid, user=sia)

    def test_one_record_alone_is_accepted(self, emulator, admin):
        [carol] = admin.lookup_users("carol")
        uid = admin.send(subject="s", text="t", users=carol)
        assert "carol" in emulator.conversations[uid].participants

    @pytest.mark.parametrize(
        "kwargs, name",
        [
            ({"users": [OrgUnitRef(id=BO_DISTRICT, name="Bo District")]}, "users"),
            ({"user_groups": UserRef(id="PhzytPW3g2J", name="Alice Banda")}, "user_groups"),
            ({"organisation_units": [UserGroupRef(id=REPORTERS)]}, "organisation_units"),
            (
                {"organisation_units": [BO_DISTRICT, UserRef(id="PhzytPW3g2J")]},
                "organisation_units",
            ),
        ],
    )
    def test_a_record_of_another_kind_is_a_type_error_before_any_request(
        self, emulator, admin, kwargs, name
    ):
        with pytest.raises(TypeError, match=f"^{name} takes uids or "):
            admin.send(subject="s", text="t", **kwargs)
        with pytest.raises(TypeError, match=f"^{name} takes uids or "):
            admin.add_recipients("Zz0000000Zz", **kwargs)
        assert [] == sent(emulator)

    def test_wrong_record_for_a_user_or_a_subtree(self, emulator, admin):
        group = UserGroupRef(id=REPORTERS, name="Reporters")
        with pytest.raises(TypeError, match="^user takes uids or UserRef records"):
            admin.assign("Zz0000000Zz", group)
        with pytest.raises(TypeError, match="^user takes uids"):
            admin.mark_read("Zz0000000Zz", user=group)
        with pytest.raises(TypeError, match="^uid takes uids or OrgUnitRef records"):
            admin.organisation_unit_subtree(UserRef(id="PhzytPW3g2J"))
        with pytest.raises(TypeError):
            admin.get_conversation(UserRef(id="PhzytPW3g2J"))
        assert [] == sent(emulator)


class TestBadInput:
    @pytest.mark.parametrize(
        "call",
        [
            lambda m, q: m.lookup_users(q),
            lambda m, q: m.lookup_feedback_recipients(q),
            lambda m, q: m.find_user_groups(q),
            lambda m, q: m.find_organisation_units(q),
        ],
        ids=["lookup_users", "lookup_feedback_recipients", "find_user_groups", "find_org_units"],
    )
    @pytest.mark.parametrize(
        "query, error",
        [
            ("", ValueError),
            ("  \t\n", ValueError),
            ("x" * 256, ValueError),
            ("a\x00b", ValueError),
            (None, TypeError),
            (["banda"], TypeError),
        ],
        ids=["empty", "blank", "256-chars", "nul", "none", "list"],
    )
    def test_queries_refused_before_any_request(self, emulator, alice, call, query, error):
        with pytest.raises(error, match="query"):
            call(alice, query)
        assert [] == sent(emulator)

    def test_255_characters_is_allowed(self, alice):
        assert [] == alice.lookup_users("x" * 255)

    @pytest.mark.parametrize("query", ["--", "%", "!!! ..."])
    def test_group_and_unit_queries_need_a_word(self, emulator, alice, query):
        with pytest.raises(ValueError, match="no letter or digit"):
            alice.find_user_groups(query)
        with pytest.raises(ValueError, match="no letter or digit"):
            alice.find_organisation_units(query)
        assert [] == sent(emulator)

    @pytest.mark.parametrize(
        "kwargs, error",
        [
            ({"boundary": "ORG_UNIT"}, ValueError),
            ({"boundary": ""}, ValueError),
            ({"boundary": 1}, TypeError),
        ],
    )
    def test_unknown_boundary(self, emulator, alice, kwargs, error):
        with pytest.raises(error, match="boundary"):
            alice.lookup_users("banda", **kwargs)
        assert [] == sent(emulator)

    @pytest.mark.parametrize(
        "limit, error", [(0, ValueError), (-3, ValueError), (True, TypeError), (2.5, TypeError)]
    )
    def test_limit_below_one(self, emulator, alice, limit, error):
        with pytest.raises(error, match="limit"):
            alice.find_user_groups("rep", limit=limit)
        with pytest.raises(error, match="limit"):
            alice.find_organisation_units("bo", limit=limit)
        assert [] == sent(emulator)

    @pytest.mark.parametrize("uid", ["O6uvpzGd5p", "O6uvpzGd5pu/", "1O6uvpzGd5p", "%", ""])
    def test_malformed_subtree_uid(self, emulator, alice, uid):
        with pytest.raises(ValueError, match="uid"):
            alice.organisation_unit_subtree(uid)
        assert [] == sent(emulator)


class TestRefusals:
    def test_bad_credentials(self, emulator):
        with Messenger(emulator.url, auth=("alice", "wrong"), retries=0) as m, pytest.raises(
            AuthenticationError
        ):
            m.lookup_users("banda")

    @pytest.mark.parametrize(
        "path, body",
        [
            ("/api/userLookup", {"people": []}),
            ("/api/userLookup", {"users": [{"displayName": "no id"}]}),
            ("/api/userGroups", {"pager": {}}),
            ("/api/organisationUnits", {"organisationUnits": [{"id": BO_DISTRICT, "level": "2"}]}),
            ("/api/organisationUnits", ["not", "an", "object"]),
        ],
    )
    def test_an_unusable_answer_is_a_response_error(self, emulator, alice, path, body):
        emulator.inject(path=f"^{path}$", body=body)
        with pytest.raises(ResponseError):
            {
                "/api/userLookup": lambda: alice.lookup_users("banda"),
                "/api/userGroups": lambda: alice.find_user_groups("rep"),
                "/api/organisationUnits": lambda: alice.organisation_unit_subtree(BO_DISTRICT),
            }[path]()

    def test_a_group_the_sender_may_not_see(self, alice):
        with pytest.raises(NotFoundError, match=DISTRICT_MANAGERS):
            alice.send(subject="s", text="t", user_groups=DISTRICT_MANAGERS)


def test_the_standalone_demo_lists_the_tree():
    """python -m tests.emulator --demo prints every unit, indented by level, with its users."""
    with standalone_demo() as lines:
        assert "Sierra Leone (ImspTQPwCqd, level 1): fatmata" in lines
        assert "  Bombali District (fdc6uOvgoji, level 2): no users" in lines
        assert any(
            line.startswith("      Ngelehun CHC (DiszpKrYNg8, level 4): aminata") for line in lines
        )
