// dynamics_bridge on Azure Functions Flex Consumption (Python 3.11).
//
// Storage is used by identity only (no account keys), every secret is a Key Vault reference
// resolved with the app's system-assigned identity, logs go to workspace-based Application
// Insights, and the queue function's instance cap keeps Dataverse under its per-user limit:
//   maximumInstanceCount x min(batchSize + newBatchThreshold, BRIDGE_DATAVERSE__MAX_CONCURRENCY)
//   + timer jobs + 1 (health) <= 52            (README "Deploy to Azure"; host.json holds batchSize)
//
// Secrets are never parameters: set them in the vault with `az keyvault secret set` (README).
// Every Key Vault reference here must resolve: the app refuses a BRIDGE_* value that is still
// '@Microsoft.KeyVault(...)' text. So optional parts (APSIS, SPAR, further Dataverse app users)
// add their settings and references only when their parameters say they are used.
// Parsed in CI with pycep-parser; not compiled by the Bicep CLI there (it downloads a binary).

targetScope = 'resourceGroup'

@description('Base name: the function app, and the prefix of the other resources (the vault and storage names keep its first letters and a unique suffix).')
@minLength(3)
@maxLength(24)
param appName string

param location string = resourceGroup().location

@description('Instances of one function group at most (Flex scales each non-HTTP function on its own). With host.json batchSize 8 this caps the queue function at 4 x 8 = 32 Dataverse requests in flight.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 4

@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

@description('Dataverse requests in flight per worker process and app user (BRIDGE_DATAVERSE__MAX_CONCURRENCY).')
@minValue(1)
@maxValue(52)
param dataverseMaxConcurrency int = 8

param queueName string = 'payment-events'
param dataverseUrl string
param dataverseTenantId string = subscription().tenantId
param dataverseClientId string
@description('Comma-separated CIDRs Swish calls from (confirm at onboarding); empty = no IP check.')
param swishAllowedIps string = ''
@description('The union\'s own payee bankgiro numbers, comma-separated (991-2346). A Bankgirot file for any other payee is refused; empty: every Bankgirot file is refused.')
param bankgirotPayeeBankgiros string = ''
@description('The union\'s Bankgirot customer numbers (kundnummer in Autogiro opening records), comma-separated; empty = not checked.')
param bankgirotCustomerNumbers string = ''
@description('Inbound addresses (CIDRs) allowed to reach the app: the providers\' published callback ranges (Swish, Billogram). Empty = open to the internet, as before. App Service access restrictions are site-wide: they also cover /api/health and the Functions host endpoints, so the Event Grid delivery of Bankgirot files is allowed by its service tag and IT adds its own ranges in adminAllowedCidrs (README "Inbound addresses").')
@maxLength(200)
param webhookAllowedCidrs array = []
@description('Further CIDRs allowed when webhookAllowedCidrs restricts the app: monitoring of /api/health, the admin\'s network (portal test runs, log streaming).')
@maxLength(200)
param adminAllowedCidrs array = []
@description('With webhookAllowedCidrs set: apply the same rules to the deployment (scm/Kudu) site. False: deployments are not restricted by address (they still need Entra sign-in).')
param restrictDeploymentsToo bool = false
@description('Further Dataverse app users (their own throttling budgets) as a JSON list in the vault secret dataverse-app-users. False: the main app user only, no reference.')
param dataverseAppUsersInVault bool = false

@description('APSIS One API key client id; empty = no APSIS settings and no apsis-client-secret reference (triggers, segments and reminders skip).')
param apsisClientId string = ''
param apsisSection string = ''
param apsisBaseUrl string = 'https://api.apsis.one'

@description('SPAR PersonSok address from SPAR; empty = no SPAR settings and no SPAR secret references (the address refresh skips).')
param sparEndpoint string = ''
@description('KundNrSlutkund (500001-599999).')
param sparCustomerNumber string = ''
@description('KundNrLeveransMottagare, the certificate owner; empty = sparCustomerNumber.')
param sparDeliveryCustomerNumber string = ''
param sparAssignmentId string = ''
@description('SlutAnvandarId: must trace to one person.')
param sparEndUserId string = ''
@description('SPAR\'s personsok.wsdl as packaged by `make functionapp` (spar/ beside function_app.py), relative to the app folder, e.g. spar/granssnitt/personsok/<version>/personsok.wsdl. Required with sparEndpoint: the bundled contract is a demo copy and is refused for SPAR.')
param sparWsdlPath string = ''
@description('Folder mirroring http://xmls.statenspersonadressregister.se/se/spar/; empty = derived from sparWsdlPath.')
param sparSchemaRoot string = ''
@description('Trust only the CA in the vault secret spar-ca-pem for SPAR. False: the platform\'s trust store.')
param sparPinCa bool = true

param logLevel string = 'INFO'

@description('Largest HTTP request body the Functions host reads (FUNCTIONS_REQUEST_BODY_SIZE_LIMIT). The Python worker gets the body only after the host buffered it, so the bridge\'s own Content-Length check (BRIDGE_WEBHOOK__MAX_BODY_BYTES, 1 MiB) spares parsing but not reading; this stops a larger body at the host. Keep it at or above the webhook limit.')
param httpBodyLimitBytes int = 1048576

@description('NCRONTAB of the trigger-outbox sweep (the triggers timer reads it as %BRIDGE_ACTIVATION__TRIGGER_SWEEP_SCHEDULE%).')
param triggerSweepSchedule string = '0 */5 * * * *'

@description('Further app settings kept on every deployment (this template replaces all app settings): BRIDGE_BANKGIROT__OCR_SCHEME, BRIDGE_SWISH__MEMBER_REF_PATTERN, BRIDGE_APSIS__EVENT_TYPES, ... The template\'s own settings win over a key given here.')
param extraAppSettings object = {}

@description('Second deployment, after `func azure functionapp publish`: subscribe the Bankgirot blob function to Event Grid (its webhook key exists only once the code runs).')
param createBlobEventSubscription bool = false

// Alerts (README "Operations"): each goes to an action group that already exists (the union's
// on-call e-mail or Teams hook); without one no alert rule is made.
@description('Resource id of an existing action group the alerts notify (/subscriptions/.../resourceGroups/.../providers/microsoft.insights/actionGroups/<name>). Empty: no alert rules.')
param actionGroupId string = ''
@description('Alert when the oldest poison message has waited longer than this (minutes), as the poison timer logs it.')
@minValue(1)
param poisonAlertMinutes int = 15
@description('Alert when more function runs than this failed within 15 minutes (a queue run that throws is retried, so a few under Dataverse throttling are normal).')
@minValue(0)
param failedRunsThreshold int = 5
@description('Second deployment, after `func azure functionapp publish`: an availability test calls /api/health with the host\'s default function key (it exists only once the code runs) and alerts when it is red. Needs actionGroupId.')
param monitorHealth bool = false
@description('Availability test locations (West Europe, North Europe, UK South); the health alert fires when at least two fail.')
param healthTestLocations array = [
  'emea-nl-ams-azr'
  'emea-gb-db3-azr'
  'emea-ru-msa-edge'
]

// The console (README "Console"): App Service Authentication with Entra ID in front of the
// whole app; the webhooks, the health probe and the Functions runtime's own webhooks stay open
// (they authenticate themselves). The console trusts the X-MS-CLIENT-PRINCIPAL header only
// because this front door sets it.
@description('Client id of the Entra ID app registration the console signs in with (ID tokens enabled, redirect https://<app>/.auth/login/aad/callback, groups claim on). Empty: no App Service Authentication, and the console is not served in Azure.')
param consoleClientId string = ''
@description('Object id of the Entra ID group allowed into the console (its members only).')
param consoleAllowedGroupId string = ''
param consoleTenantId string = subscription().tenantId

var suffix = uniqueString(resourceGroup().id, appName)
// Both names are global: keep all 13 characters of the unique suffix (storage: 3-24 lower-case
// letters and digits; vault: 3-24, letters, digits and single hyphens, ending in a letter or digit).
var storageName = 'st${take(toLower(replace(appName, '-', '')), 9)}${suffix}'
var vaultName = 'kv-${take(toLower(replace(appName, '-', '')), 7)}-${suffix}'
var deploymentContainer = 'app-package'
var incomingContainer = 'bankgirot-incoming'
var receiptContainer = 'bankgirot-receipts'

// Inbound access restrictions (README "Inbound addresses"). App Service evaluates them per site,
// not per path: with any rule the unmatched action is Deny for every route, so besides the
// webhook senders the Event Grid service (blob trigger of Bankgirot files, /runtime/webhooks/blobs)
// and the admin ranges are allowed. Priorities: webhook senders 100-299, admin 300-499, Event Grid 500.
var restrictInbound = !empty(webhookAllowedCidrs)
var webhookRules = [for (cidr, i) in webhookAllowedCidrs: {
  name: 'webhook-sender-${i}'
  description: 'Webhook sender range (webhookAllowedCidrs)'
  ipAddress: cidr
  action: 'Allow'
  priority: 100 + i
}]
var adminRules = [for (cidr, i) in adminAllowedCidrs: {
  name: 'admin-${i}'
  description: 'Admin or monitoring range (adminAllowedCidrs)'
  ipAddress: cidr
  action: 'Allow'
  priority: 300 + i
}]
var eventGridRule = {
  name: 'event-grid'
  description: 'Event Grid delivers Bankgirot blob events to /runtime/webhooks/blobs'
  ipAddress: 'AzureEventGrid'
  tag: 'ServiceTag'
  action: 'Allow'
  priority: 500
}
var inboundRules = restrictInbound ? concat(webhookRules, adminRules, [eventGridRule]) : []

// Built-in roles (IDs are the same in every tenant).
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
}

// Secret names in the vault, and the app settings that reference them. The first three are
// always referenced; the others only when their part is deployed (see the settings below).
var secrets = {
  BRIDGE_BILLOGRAM__SIGN_KEY: 'billogram-sign-key'
  BRIDGE_SWISH__CALLBACK_IDENTIFIER: 'swish-callback-identifier'
  BRIDGE_DATAVERSE__CLIENT_SECRET: 'dataverse-client-secret'
  BRIDGE_DATAVERSE__APP_USERS: 'dataverse-app-users'
  BRIDGE_APSIS__CLIENT_SECRET: 'apsis-client-secret'
  BRIDGE_SPAR__CLIENT_CERT_PEM: 'spar-client-cert-pem'
  BRIDGE_SPAR__CLIENT_KEY_PEM: 'spar-client-key-pem'
  BRIDGE_SPAR__CA_PEM: 'spar-ca-pem'
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageName
  location: location
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    defaultToOAuthAuthentication: true
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for name in [deploymentContainer, incomingContainer, receiptContainer]: {
  parent: blobService
  name: name
}]

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for name in [queueName, '${queueName}-poison']: {
  parent: queueService
  name: name
}]

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${appName}'
  location: location
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: 90
  }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${appName}'
  location: location
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
  }
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: vaultName
  location: location
  properties: {
    tenantId: subscription().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
  }
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-${appName}'
  location: location
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: appName
  location: location
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      ipSecurityRestrictions: inboundRules
      ipSecurityRestrictionsDefaultAction: restrictInbound ? 'Deny' : 'Allow'
      scmIpSecurityRestrictionsUseMain: restrictInbound && restrictDeploymentsToo
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainer}'
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

resource storageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in [roles.storageBlobDataOwner, roles.storageQueueDataContributor, roles.storageTableDataContributor]: {
  name: guid(storage.id, site.id, role)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
    principalId: site.identity.principalId
    principalType: 'ServicePrincipal'
  }
}]

resource vaultRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, site.id, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: site.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// App settings. Flex takes the runtime from functionAppConfig; FUNCTIONS_WORKER_RUNTIME and the
// other deprecated settings (WEBSITE_RUN_FROM_PACKAGE, ...) must not be set. An empty value
// means unset to the app, but optional parts are left out altogether.
var coreSettings = {
  AzureWebJobsStorage__accountName: storage.name
  APPLICATIONINSIGHTS_CONNECTION_STRING: insights.properties.ConnectionString
  BRIDGE_QUEUE__BACKEND: 'azure'
  BRIDGE_QUEUE__ACCOUNT_URL: storage.properties.primaryEndpoints.queue
  BRIDGE_QUEUE__NAME: queueName
  BRIDGE_OPS__BACKEND: 'tables'
  BRIDGE_OPS__ACCOUNT_URL: storage.properties.primaryEndpoints.table
  BRIDGE_DATAVERSE__URL: dataverseUrl
  BRIDGE_DATAVERSE__TENANT_ID: dataverseTenantId
  BRIDGE_DATAVERSE__CLIENT_ID: dataverseClientId
  BRIDGE_DATAVERSE__MAX_CONCURRENCY: string(dataverseMaxConcurrency)
  BRIDGE_SWISH__ALLOWED_IPS: swishAllowedIps
  BRIDGE_BANKGIROT__PAYEE_BANKGIROS: bankgirotPayeeBankgiros
  BRIDGE_BANKGIROT__CUSTOMER_NUMBERS: bankgirotCustomerNumbers
  BRIDGE_LOG__LEVEL: logLevel
  FUNCTIONS_REQUEST_BODY_SIZE_LIMIT: string(httpBodyLimitBytes)
  BRIDGE_ACTIVATION__TRIGGER_SWEEP_SCHEDULE: triggerSweepSchedule
  BRIDGE_BILLOGRAM__SIGN_KEY: '@Microsoft.KeyVault(VaultName=${vault.name};SecretName=${secrets.BRIDGE_BILLOGRAM__SIGN_KEY})'
  BRIDGE_SWISH__CALLBACK_IDENTIFIER: '@Microsoft.KeyVault(VaultName=${vault.name};SecretName=${secrets.BRIDGE_SWISH__CALLBACK_IDENTIFIER})'
  BRIDGE_DATAVERSE__CLIENT_SECRET: '@Microsoft.KeyVault(VaultName=${vault.name};SecretName=${secrets.BRIDGE_DATAVERSE__CLIENT_SECRET})'
}

var appUserSettings = dataverseAppUsersInVault ? {
  BRIDGE_DATAVERSE__APP_USERS: '@Microsoft.KeyVault(VaultName=${vault.name};SecretName=${secrets.BRIDGE_DATAVERSE__APP_USERS})'
} : {}

var apsisSettings = empty(apsisClientId) ? {} : {
  BRIDGE_APSIS__BASE_URL: apsisBaseUrl
  BRIDGE_APSIS__CLIENT_ID: apsisClientId
  BRIDGE_APSIS__SECTION: apsisSection
  BRIDGE_APSIS__CLIENT_SECRET: '@Microsoft.KeyVault(VaultName=${vault.name};SecretName=${secrets.BRIDGE_APSIS__CLIENT_SECRET})'
}

var sparSettings = empty(sparEndpoint) ? {} : {
  BRIDGE_SPAR__ENDPOINT: sparEndpoint
  BRIDGE_SPAR__CUSTOMER_NUMBER: sparCustomerNumber
  BRIDGE_SPAR__DELIVERY_CUSTOMER_NUMBER: sparDeliveryCustomerNumber
  BRIDGE_SPAR__ASSIGNMENT_ID: sparAssignmentId
  BRIDGE_SPAR__END_USER_ID: sparEndUserId
  BRIDGE_SPAR__WSDL_PATH: sparWsdlPath
  BRIDGE_SPAR__SCHEMA_ROOT: sparSchemaRoot
  BRIDGE_SPAR__CLIENT_CERT_PEM: '@Microsoft.KeyVault(VaultName=${vault.name};SecretName=${secrets.BRIDGE_SPAR__CLIENT_CERT_PEM})'
  BRIDGE_SPAR__CLIENT_KEY_PEM: '@Microsoft.KeyVault(VaultName=${vault.name};SecretName=${secrets.BRIDGE_SPAR__CLIENT_KEY_PEM})'
}

var sparCaSettings = (sparPinCa && !empty(sparEndpoint)) ? {
  BRIDGE_SPAR__CA_PEM: '@Microsoft.KeyVault(VaultName=${vault.name};SecretName=${secrets.BRIDGE_SPAR__CA_PEM})'
} : {}

// The console trusts the X-MS-CLIENT-PRINCIPAL header only with App Service Authentication in
// front (the auth resource below), and lets in the members of the allowed group.
var consoleSettings = empty(consoleClientId) ? {} : {
  BRIDGE_CONSOLE__AUTH: 'easyauth'
  BRIDGE_CONSOLE__ALLOWED_GROUPS: consoleAllowedGroupId
}

// After the role assignments: Key Vault references resolve with the identity. The template's
// settings come last in union(), so they win over a key of the same name in extraAppSettings.
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: union(extraAppSettings, coreSettings, appUserSettings, apsisSettings, sparSettings, sparCaSettings, consoleSettings)
  dependsOn: [
    storageRoles
    vaultRole
  ]
}

// Bankgirot files: blob created in bankgirot-incoming -> the blob function (Event Grid source).
resource storageEvents 'Microsoft.EventGrid/systemTopics@2024-06-01-preview' = {
  name: 'evgt-${appName}'
  location: location
  properties: {
    source: storage.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

resource blobSubscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2024-06-01-preview' = if (createBlobEventSubscription) {
  parent: storageEvents
  name: 'bankgirot-incoming'
  properties: {
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: 'https://${site.properties.defaultHostName}/runtime/webhooks/blobs?functionName=Host.Functions.bankgirot_file&code=${listKeys('${site.id}/host/default', '2024-04-01').systemKeys.blobs_extension}'
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.Storage.BlobCreated'
      ]
      subjectBeginsWith: '/blobServices/default/containers/${incomingContainer}/'
    }
    eventDeliverySchema: 'EventGridSchema'
  }
}

// --- Alerts ---------------------------------------------------------------------------------
// Log alerts query Application Insights (classic table names: traces, requests). The bridge's
// log lines are JSON in traces.message (dynamics_bridge.logs); structured fields are read from
// customDimensions first, then from that JSON, then from the text itself.
var alerting = !empty(actionGroupId)
var alertActions = {
  actionGroups: [
    actionGroupId
  ]
}

// The poison timer logs `poison waiting: N message(s), oldest M minutes` (poison_waiting,
// poison_oldest_minutes) while the poison book holds unhandled messages. One row per such line
// (no summarize: over no rows it would still return one, and the Count would fire).
var poisonQuery = '''
traces
| where message has "poison waiting"
| extend line = parse_json(message)
| extend waiting = toint(coalesce(tostring(customDimensions.poison_waiting), tostring(line.poison_waiting), extract(@"poison waiting: (\d+)", 1, message)))
| extend oldest_minutes = toint(coalesce(tostring(customDimensions.poison_oldest_minutes), tostring(line.poison_oldest_minutes), extract(@"oldest (\d+) minute", 1, message)))
| where oldest_minutes > {0}
| project timestamp, waiting, oldest_minutes
'''

// Failed runs of any function but the health probe (its own alert says why it is red).
var failedRunsQuery = '''
requests
| where success == false and operation_Name != "health"
| summarize failures = count() by operation_Name
'''

resource poisonAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = if (alerting) {
  name: 'alert-${appName}-poison-waiting'
  location: location
  kind: 'LogAlert'
  properties: {
    displayName: '${appName}: poison messages waiting over ${poisonAlertMinutes} minutes'
    description: 'Payment events failed five times and wait in the poison book. Open the console\'s Poison page: read the reason, fix the cause (unknown member number, mapping), then replay or purge.'
    severity: 2
    enabled: true
    scopes: [
      insights.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT30M'
    criteria: {
      allOf: [
        {
          query: format(poisonQuery, poisonAlertMinutes)
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: alertActions
  }
}

resource failedRunsAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = if (alerting) {
  name: 'alert-${appName}-failed-runs'
  location: location
  kind: 'LogAlert'
  properties: {
    displayName: '${appName}: failed function runs'
    description: 'More than ${failedRunsThreshold} runs of one function failed in 15 minutes. Look at the console\'s Overview (last runs, health) and the exceptions in Application Insights.'
    severity: 2
    enabled: true
    scopes: [
      insights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: failedRunsQuery
          timeAggregation: 'Total'
          metricMeasureColumn: 'failures'
          dimensions: [
            {
              name: 'operation_Name'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: failedRunsThreshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: alertActions
  }
}

// Health red: /api/health answers 503 when the vault, the settings, the queue or Dataverse fail.
// The standard availability test sends the host's default function key in a header; the key is
// then readable by whoever may read the test (Reader on the resource group).
resource healthTest 'Microsoft.Insights/webtests@2022-06-15' = if (alerting && monitorHealth) {
  name: 'webtest-${appName}-health'
  location: location
  kind: 'standard'
  tags: {
    'hidden-link:${insights.id}': 'Resource'
  }
  properties: {
    SyntheticMonitorId: 'webtest-${appName}-health'
    Name: '${appName} /api/health'
    Description: 'GET /api/health: 200 when the vault, settings, queue and Dataverse are fine, 503 with the reason otherwise.'
    Enabled: true
    Kind: 'standard'
    Frequency: 300
    Timeout: 30
    RetryEnabled: true
    Locations: [for id in healthTestLocations: {
      Id: id
    }]
    Request: {
      RequestUrl: 'https://${site.properties.defaultHostName}/api/health'
      HttpVerb: 'GET'
      Headers: [
        {
          key: 'x-functions-key'
          value: listKeys('${site.id}/host/default', '2024-04-01').functionKeys.default
        }
      ]
      ParseDependentRequests: false
      FollowRedirects: false
    }
    ValidationRules: {
      ExpectedHttpStatusCode: 200
      SSLCheck: true
      SSLCertRemainingLifetimeCheck: 7
    }
  }
}

resource healthAlert 'Microsoft.Insights/metricAlerts@2018-03-01' = if (alerting && monitorHealth) {
  name: 'alert-${appName}-health-red'
  location: 'global'
  properties: {
    description: '/api/health is red (503) or unreachable from two test locations. Its JSON names the failing check (key_vault, settings, queue, dataverse) and the console\'s Overview shows the reason.'
    severity: 1
    enabled: true
    scopes: [
      healthTest.id
      insights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.WebtestLocationAvailabilityCriteria'
      webTestId: healthTest.id
      componentId: insights.id
      failedLocationCount: 2
    }
    autoMitigate: true
    actions: [
      {
        actionGroupId: actionGroupId
      }
    ]
  }
}

// --- App Service Authentication (the console) ----------------------------------------------
// Every path needs an Entra ID sign-in by a member of the allowed group, except those that
// authenticate themselves: the payment webhooks (signature, callback identifier), the health
// probe and the Functions runtime's webhooks (function keys; Event Grid delivers Bankgirot
// blob events to /runtime/webhooks/blobs). excludedPaths takes a trailing /* for a subtree
// (MicrosoftDocs/azure-docs#86514).
var authExcludedPaths = [
  '/api/webhooks/*'
  '/api/health'
  '/runtime/webhooks/*'
]

resource auth 'Microsoft.Web/sites/config@2024-04-01' = if (!empty(consoleClientId)) {
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'RedirectToLoginPage'
      redirectToProvider: 'azureactivedirectory'
      excludedPaths: authExcludedPaths
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: consoleClientId
          openIdIssuer: 'https://login.microsoftonline.com/${consoleTenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            consoleClientId
            'api://${consoleClientId}'
          ]
          defaultAuthorizationPolicy: {
            allowedPrincipals: {
              groups: [
                consoleAllowedGroupId
              ]
            }
          }
        }
      }
    }
    login: {
      tokenStore: {
        enabled: true
      }
    }
    httpSettings: {
      requireHttps: true
    }
  }
}

output functionAppName string = site.name
output keyVaultName string = vault.name
output storageAccountName string = storage.name
output swishWebhookUrl string = 'https://${site.properties.defaultHostName}/api/webhooks/swish'
output billogramWebhookUrl string = 'https://${site.properties.defaultHostName}/api/webhooks/billogram'
output secretNames object = secrets
@description('The vault secrets this deployment references: each must exist before the app runs.')
output referencedSecretNames array = concat(
  [secrets.BRIDGE_BILLOGRAM__SIGN_KEY, secrets.BRIDGE_SWISH__CALLBACK_IDENTIFIER, secrets.BRIDGE_DATAVERSE__CLIENT_SECRET],
  dataverseAppUsersInVault ? [secrets.BRIDGE_DATAVERSE__APP_USERS] : [],
  empty(apsisClientId) ? [] : [secrets.BRIDGE_APSIS__CLIENT_SECRET],
  empty(sparEndpoint) ? [] : [secrets.BRIDGE_SPAR__CLIENT_CERT_PEM, secrets.BRIDGE_SPAR__CLIENT_KEY_PEM],
  (sparPinCa && !empty(sparEndpoint)) ? [secrets.BRIDGE_SPAR__CA_PEM] : []
)
