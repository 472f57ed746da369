import type { Config } from "../config/schema.js";
import { isTenantIdOrDomain } from "./consent.js";
import { opathQuote, psQuote, sanitizeLabel } from "./powershell.js";

/*
 * PowerShell for the customer's admin that limits the app to the tenant's one sender.
 *
 * Default: RBAC for Applications in Exchange Online (Microsoft's current mechanism). Its
 * scoped grant is independent of, and adds to, any grant made in Microsoft Entra ID: an
 * admin-consented (tenant-wide) Mail.Send application permission still lets the app send as
 * every mailbox. So the script checks for that Entra grant and reports FAIL while it exists;
 * with -RemoveEntraGrant it removes it.
 *
 * --legacy: an ApplicationAccessPolicy (RestrictAccess to a mail-enabled security group that
 * holds only the sender). That model needs the Entra Mail.Send grant; the policy narrows it.
 * Microsoft has replaced it with RBAC for Applications and asks not to create new ones.
 *
 * Every value from the config appears once, in a single-quoted literal assigned to a
 * variable at the top; the rest of the script is constant text that uses the variables.
 * No double-quoted (expanding) strings are generated at all.
 */

/** Microsoft Graph's well-known application id (the same in every tenant). */
export const MICROSOFT_GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000";

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const TENANT_KEY = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
// A deliberately plain check: one @, no spaces or control characters. The config's own
// schema validates addresses properly; this only keeps odd input out of scripts.
const PLAIN_ADDRESS = /^[^\s@]{1,64}@[A-Za-z0-9.-]{1,253}$/;

export interface PolicyScriptInput {
  /** Tenant key from the config; used to name the Exchange objects. */
  readonly tenantKey: string;
  /** The customer's tenant: GUID or domain. */
  readonly tenantId: string;
  /** Application (client) id of the app used for this tenant. */
  readonly appId: string;
  /** The only mailbox the app may send as. */
  readonly sender: string;
  /** Shown to the admin and used as the service principal's display name in Exchange. */
  readonly displayName?: string;
}

export class PolicyScriptInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PolicyScriptInputError";
  }
}

function check(input: PolicyScriptInput): void {
  if (!TENANT_KEY.test(input.tenantKey)) throw new PolicyScriptInputError(`tenant key "${input.tenantKey}" uses characters other than letters, digits, . _ -`);
  if (!isTenantIdOrDomain(input.tenantId)) throw new PolicyScriptInputError("tenantId must be a GUID or domain");
  if (!GUID.test(input.appId)) throw new PolicyScriptInputError("appId must be a GUID");
  if (!PLAIN_ADDRESS.test(input.sender)) throw new PolicyScriptInputError("sender must be a plain email address");
}

/** Exchange object names are at most 64 characters. */
function objectName(prefix: string, key: string, suffix: string): string {
  const room = 64 - prefix.length - suffix.length;
  return `${prefix}${key.slice(0, room)}${suffix}`;
}

function appName(input: PolicyScriptInput): string {
  const label = sanitizeLabel(input.displayName ?? "", 40);
  return label ? `noreply-relay (${label})` : `noreply-relay (${input.tenantKey})`;
}

/** Helpers shared by both scripts: result lines and a final verdict. Constant text only. */
const RESULT_HELPERS = String.raw`$script:Failures = 0
function Write-Pass([string] $Message) { Write-Host ('PASS  ' + $Message) -ForegroundColor Green }
function Write-Warn([string] $Message) { Write-Host ('WARN  ' + $Message) -ForegroundColor Yellow }
function Write-Fail([string] $Message) { $script:Failures++; Write-Host ('FAIL  ' + $Message) -ForegroundColor Red }
function Get-OrNull([scriptblock] $Lookup) { try { & $Lookup } catch { $null } }`;

const VERDICT = String.raw`Write-Host ''
if ($script:Failures -eq 0) {
    Write-Host ('SUCCESS: the app can send only as ' + $Sender + '. Changes can take up to 2 hours to reach Microsoft Graph.') -ForegroundColor Green
    exit 0
}
Write-Host ('FAILED: ' + $script:Failures + ' check(s) failed. Fix what the FAIL lines say and run this script again (it is safe to re-run).') -ForegroundColor Red
exit 1`;

/** The Entra side, shared: look up the enterprise app and the Graph Mail.Send app role. */
const ENTRA_LOOKUP = String.raw`Write-Host 'Connecting to Microsoft Graph (sign in as an admin of this tenant)...'
$graphScopes = @('Application.Read.All')
if ($RemoveEntraGrant) { $graphScopes += 'AppRoleAssignment.ReadWrite.All' }
Connect-MgGraph -TenantId $TenantId -Scopes $graphScopes -NoWelcome

if (-not $ServicePrincipalObjectId) {
    $sp = Get-MgServicePrincipal -Filter ('appId eq ''{0}''' -f $AppId)
    if (-not $sp) {
        Write-Fail ('The app ' + $AppId + ' has no enterprise application (service principal) in this tenant. Open the admin consent link first, then run this script again.')
        exit 1
    }
    $ServicePrincipalObjectId = $sp.Id
}
Write-Pass ('Enterprise application found: object id ' + $ServicePrincipalObjectId)

$graphSp = Get-MgServicePrincipal -Filter ('appId eq ''{0}''' -f $GraphAppId)
$mailSendRole = $graphSp.AppRoles | Where-Object { $_.Value -eq 'Mail.Send' -and $_.AllowedMemberTypes -contains 'Application' } | Select-Object -First 1
$entraGrants = @(Get-MgServicePrincipalAppRoleAssignment -ServicePrincipalId $ServicePrincipalObjectId -All |
    Where-Object { $_.ResourceId -eq $graphSp.Id -and $_.AppRoleId -eq $mailSendRole.Id })`;

/**
 * RBAC for Applications: New-ServicePrincipal (pointer to the enterprise app), a management
 * scope matching only the sender, an "Application Mail.Send" role assignment on that scope,
 * then Test-ServicePrincipalAuthorization and the Entra-grant check.
 */
export function rbacPolicyScript(input: PolicyScriptInput): string {
  check(input);
  const scopeName = objectName("noreply-relay ", input.tenantKey, " sender");
  const assignmentName = objectName("noreply-relay ", input.tenantKey, " Mail.Send");
  const filter = `PrimarySmtpAddress -eq ${opathQuote(input.sender, "sender")}`;
  return `# noreply-relay: let the app send mail ONLY as this tenant's noreply mailbox,
# using RBAC for Applications in Exchange Online.
# Tenant key: ${input.tenantKey}
#
# Run in PowerShell 7 as an admin who is in the Exchange "Organization Management" role
# group and can read enterprise applications in Microsoft Entra ID. The script is safe
# to run more than once. It ends with SUCCESS or FAILED, and exits 1 on failure.
#
# Important: a Mail.Send application permission granted in Microsoft Entra ID (admin
# consent) lets the app send as ANY mailbox, whatever Exchange scope exists: the two
# grants add up. With RBAC for Applications that Entra grant must be removed. This script
# reports it as FAIL while it exists; run it with -RemoveEntraGrant to remove it.
#
# Needs: Install-Module ExchangeOnlineManagement, Microsoft.Graph.Applications -Scope CurrentUser
#Requires -Modules ExchangeOnlineManagement, Microsoft.Graph.Applications
[CmdletBinding()]
param(
    # Object id of the app's enterprise application (service principal) in YOUR tenant.
    # Looked up with Get-MgServicePrincipal when empty. Not the app registration's object id.
    [string] $ServicePrincipalObjectId = '',
    # Any other mailbox of your tenant; the script then proves the app can NOT use it.
    [string] $OtherMailbox = '',
    # Remove the tenant-wide Mail.Send grant in Microsoft Entra ID (needed for the scope to apply).
    [switch] $RemoveEntraGrant
)
$ErrorActionPreference = 'Stop'

$TenantId = ${psQuote(input.tenantId, "tenantId")}
$AppId = ${psQuote(input.appId, "appId")}
$AppName = ${psQuote(appName(input), "displayName")}
$Sender = ${psQuote(input.sender, "sender")}
$ScopeName = ${psQuote(scopeName, "scope name")}
$AssignmentName = ${psQuote(assignmentName, "assignment name")}
$RecipientFilter = ${psQuote(filter, "recipient filter")}
$GraphAppId = ${psQuote(MICROSOFT_GRAPH_APP_ID)}

${RESULT_HELPERS}

${ENTRA_LOOKUP}

Write-Host 'Connecting to Exchange Online...'
Connect-ExchangeOnline -ShowBanner:$false

# 1. The scope must match the sender and nothing else.
$preview = @(Get-Recipient -RecipientPreviewFilter $RecipientFilter -ResultSize 10)
if ($preview.Count -eq 1 -and [string]$preview[0].PrimarySmtpAddress -eq $Sender) {
    Write-Pass ('The scope filter matches exactly one recipient: ' + $Sender)
} elseif ($preview.Count -eq 0) {
    Write-Fail ('No recipient has the primary address ' + $Sender + '. Create that mailbox (a shared mailbox is fine) or correct the sender in the noreply-relay config.')
} else {
    Write-Fail ('The scope filter matches ' + $preview.Count + ' recipients instead of exactly ' + $Sender + '.')
}

# 2. Exchange's pointer to the enterprise application.
$exoSp = Get-ServicePrincipal | Where-Object { $_.AppId -eq $AppId } | Select-Object -First 1
if ($exoSp) {
    Write-Pass ('Exchange service principal exists: ' + $exoSp.DisplayName)
} else {
    $exoSp = New-ServicePrincipal -AppId $AppId -ObjectId $ServicePrincipalObjectId -DisplayName $AppName
    Write-Pass ('Exchange service principal created: ' + $AppName)
}

# 3. A management scope with only the sender.
$scope = Get-OrNull { Get-ManagementScope -Identity $ScopeName }
if ($scope) {
    Set-ManagementScope -Identity $ScopeName -RecipientRestrictionFilter $RecipientFilter
    Write-Pass ('Management scope updated: ' + $ScopeName)
} else {
    New-ManagementScope -Name $ScopeName -RecipientRestrictionFilter $RecipientFilter | Out-Null
    Write-Pass ('Management scope created: ' + $ScopeName)
}

# 4. Mail.Send for the app, on that scope only.
$assignment = Get-OrNull { Get-ManagementRoleAssignment -Identity $AssignmentName }
if ($assignment) {
    Write-Pass ('Role assignment exists: ' + $AssignmentName)
} else {
    New-ManagementRoleAssignment -Name $AssignmentName -Role 'Application Mail.Send' -App $AppId -CustomResourceScope $ScopeName | Out-Null
    Write-Pass ('Role assignment created: ' + $AssignmentName)
}

# 5. Test what was done (this check does not wait for Exchange's permission cache).
$rows = @(Test-ServicePrincipalAuthorization -Identity $AppId -Resource $Sender | Where-Object { $_.RoleName -eq 'Application Mail.Send' })
if (@($rows | Where-Object { [string]$_.InScope -eq 'True' }).Count -gt 0) {
    Write-Pass ('Test-ServicePrincipalAuthorization: Application Mail.Send is in scope for ' + $Sender)
} else {
    Write-Fail ('Test-ServicePrincipalAuthorization: Application Mail.Send is NOT in scope for ' + $Sender)
}
if ($OtherMailbox) {
    $other = @(Test-ServicePrincipalAuthorization -Identity $AppId -Resource $OtherMailbox | Where-Object { $_.RoleName -eq 'Application Mail.Send' -and [string]$_.InScope -eq 'True' })
    if ($other.Count -eq 0) { Write-Pass ('The app can not send as ' + $OtherMailbox + ' (as intended)') }
    else { Write-Fail ('The app CAN send as ' + $OtherMailbox + ': the scope is too wide') }
}

# 6. The Entra grant that would make the scope pointless.
if ($entraGrants.Count -eq 0) {
    Write-Pass 'No tenant-wide Mail.Send grant in Microsoft Entra ID: the Exchange scope is what applies.'
} elseif ($RemoveEntraGrant) {
    foreach ($grant in $entraGrants) {
        Remove-MgServicePrincipalAppRoleAssignment -ServicePrincipalId $ServicePrincipalObjectId -AppRoleAssignmentId $grant.Id
    }
    Write-Pass 'Removed the tenant-wide Mail.Send grant in Microsoft Entra ID: the Exchange scope is what applies now.'
} else {
    Write-Fail 'The app still has the tenant-wide Mail.Send application permission in Microsoft Entra ID, so it can send as ANY mailbox. Run this script again with -RemoveEntraGrant (or remove Mail.Send under Enterprise applications > Permissions).'
}

${VERDICT}
`;
}

/**
 * ApplicationAccessPolicy (legacy): a mail-enabled security group holding only the sender,
 * New-ApplicationAccessPolicy RestrictAccess on it, then Test-ApplicationAccessPolicy.
 */
export function legacyPolicyScript(input: PolicyScriptInput): string {
  check(input);
  const groupName = objectName("noreply-relay ", input.tenantKey, " sender");
  const groupAlias = objectName("noreply-relay-", input.tenantKey.replace(/[^A-Za-z0-9._-]/g, "-"), "-sender");
  const description = sanitizeLabel(`noreply-relay: ${input.displayName ? sanitizeLabel(input.displayName, 60) + " " : ""}(${input.tenantKey}) may send only as ${input.sender}`, 250);
  return `# noreply-relay: let the app send mail ONLY as this tenant's noreply mailbox,
# using an ApplicationAccessPolicy (legacy).
# Tenant key: ${input.tenantKey}
#
# Microsoft has replaced Application Access Policies with RBAC for Applications and asks
# not to create new ones; use this only where RBAC for Applications cannot be used (run
# "noreply-relay policy-script" without --legacy for the RBAC script).
#
# In this model the app KEEPS its Mail.Send application permission in Microsoft Entra ID
# (admin consent) and the policy narrows it to the members of one mail-enabled security
# group, which must hold only the sender.
#
# Run in PowerShell 7 as an Exchange administrator. Safe to run more than once. Ends with
# SUCCESS or FAILED, and exits 1 on failure.
#
# Needs: Install-Module ExchangeOnlineManagement, Microsoft.Graph.Applications -Scope CurrentUser
#Requires -Modules ExchangeOnlineManagement, Microsoft.Graph.Applications
[CmdletBinding()]
param(
    # Object id of the app's enterprise application (service principal) in YOUR tenant.
    # Looked up with Get-MgServicePrincipal when empty.
    [string] $ServicePrincipalObjectId = '',
    # Any other mailbox of your tenant; the script then proves the app can NOT use it.
    [string] $OtherMailbox = '',
    # Not used by this model (the Entra grant is required here); kept so both scripts take the same switches.
    [switch] $RemoveEntraGrant
)
$ErrorActionPreference = 'Stop'

$TenantId = ${psQuote(input.tenantId, "tenantId")}
$AppId = ${psQuote(input.appId, "appId")}
$Sender = ${psQuote(input.sender, "sender")}
$GroupName = ${psQuote(groupName, "group name")}
$GroupAlias = ${psQuote(groupAlias, "group alias")}
$PolicyDescription = ${psQuote(description, "description")}
$GraphAppId = ${psQuote(MICROSOFT_GRAPH_APP_ID)}

${RESULT_HELPERS}

if ($RemoveEntraGrant) {
    Write-Fail '-RemoveEntraGrant does not apply to an ApplicationAccessPolicy: the policy only narrows the Entra grant, it needs it.'
    exit 1
}

${ENTRA_LOOKUP}

if ($entraGrants.Count -gt 0) {
    Write-Pass 'The app has the Mail.Send application permission in Microsoft Entra ID (this policy narrows it).'
} else {
    Write-Fail 'The app has no Mail.Send application permission in Microsoft Entra ID: open the admin consent link again and accept.'
}

Write-Host 'Connecting to Exchange Online...'
Connect-ExchangeOnline -ShowBanner:$false

# 1. The sender must exist.
$mailbox = Get-OrNull { Get-Recipient -Identity $Sender }
if ($mailbox) { Write-Pass ('Sender found: ' + $Sender) }
else { Write-Fail ('No recipient ' + $Sender + '. Create that mailbox (a shared mailbox is fine) or correct the sender in the noreply-relay config.') }

# 2. A mail-enabled security group with only the sender in it.
$group = Get-OrNull { Get-DistributionGroup -Identity $GroupAlias }
if (-not $group) {
    $group = New-DistributionGroup -Name $GroupName -Alias $GroupAlias -Type Security -Members $Sender
    Set-DistributionGroup -Identity $group.Identity -HiddenFromAddressListsEnabled $true
    Write-Pass ('Mail-enabled security group created: ' + $group.PrimarySmtpAddress)
} else {
    Write-Pass ('Mail-enabled security group exists: ' + $group.PrimarySmtpAddress)
}
$members = @(Get-DistributionGroupMember -Identity $group.Identity)
if (@($members | Where-Object { [string]$_.PrimarySmtpAddress -eq $Sender }).Count -eq 0) {
    Add-DistributionGroupMember -Identity $group.Identity -Member $Sender
    Write-Pass ('Added ' + $Sender + ' to the group')
}
$extra = @($members | Where-Object { [string]$_.PrimarySmtpAddress -ne $Sender })
if ($extra.Count -gt 0) {
    Write-Fail ('The group also holds ' + (($extra | ForEach-Object { [string]$_.PrimarySmtpAddress }) -join ', ') + ': the app could send as them too. Remove them from ' + $group.PrimarySmtpAddress + '.')
}

# 3. The policy.
$policies = @(Get-ApplicationAccessPolicy | Where-Object { $_.AppId -eq $AppId })
if ($policies.Count -eq 0) {
    New-ApplicationAccessPolicy -AppId $AppId -PolicyScopeGroupId ([string]$group.PrimarySmtpAddress) -AccessRight RestrictAccess -Description $PolicyDescription | Out-Null
    Write-Pass 'ApplicationAccessPolicy created (RestrictAccess)'
} else {
    Write-Pass ('ApplicationAccessPolicy exists for this app (' + $policies.Count + ')')
}

# 4. Test what was done. Results can take up to an hour or more to match what Graph enforces.
$result = [string](Test-ApplicationAccessPolicy -Identity $Sender -AppId $AppId).AccessCheckResult
if ($result -eq 'Granted') { Write-Pass ('Test-ApplicationAccessPolicy: ' + $Sender + ' is Granted') }
elseif ($result -eq 'Denied') { Write-Fail ('Test-ApplicationAccessPolicy: ' + $Sender + ' is Denied') }
else { Write-Warn ('Test-ApplicationAccessPolicy for ' + $Sender + ' answered ' + $result + ' (Granted expected)') }
if ($OtherMailbox) {
    $otherResult = [string](Test-ApplicationAccessPolicy -Identity $OtherMailbox -AppId $AppId).AccessCheckResult
    if ($otherResult -eq 'Denied') { Write-Pass ('The app can not send as ' + $OtherMailbox + ' (as intended)') }
    elseif ($otherResult -eq 'Granted') { Write-Fail ('The app CAN send as ' + $OtherMailbox + ': the policy is too wide') }
    else { Write-Warn ('Test-ApplicationAccessPolicy for ' + $OtherMailbox + ' answered ' + $otherResult + ' (Denied expected)') }
}

${VERDICT}
`;
}

/** The script for a configured tenant. */
export function policyScriptFor(config: Pick<Config, "tenants" | "app">, tenantKey: string, options: { legacy?: boolean } = {}): string {
  const tenant = Object.hasOwn(config.tenants, tenantKey) ? config.tenants[tenantKey] : undefined;
  if (!tenant) throw new PolicyScriptInputError(`no tenant "${tenantKey}" in the config (policy-script needs the tenant's sender)`);
  const app = tenant.app ?? config.app;
  if (!app) throw new PolicyScriptInputError(`tenants.${tenantKey}.app: no app: set the top-level app or this tenant's app`);
  const input: PolicyScriptInput = {
    tenantKey,
    tenantId: tenant.tenantId,
    appId: app.clientId,
    sender: tenant.sender,
    ...(tenant.displayName !== undefined ? { displayName: tenant.displayName } : {}),
  };
  return options.legacy ? legacyPolicyScript(input) : rbacPolicyScript(input);
}
